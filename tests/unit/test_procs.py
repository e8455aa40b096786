"""The process-table helpers that `lookalike serve` ends its own tree with, on real processes."""

from __future__ import annotations

import subprocess
import sys
import time

from lookalike import procs

# A child that starts a grandchild ignoring SIGTERM (as a stuck worker would), then waits.
TREE = """
import signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
time.sleep(600)
"""


def wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_descendants_and_end_leave_nothing_of_the_tree() -> None:
    proc = subprocess.Popen([sys.executable, "-c", TREE])
    try:
        wait_for(lambda: len(procs.descendants(proc.pid)) == 1)
        tree = [proc.pid, *procs.descendants(proc.pid)]
        killed = procs.end(tree, grace_s=0.5)
        proc.wait(timeout=10)
        # The grandchild ignored SIGTERM: only SIGKILL ended it.
        assert killed == [tree[1]]
        wait_for(lambda: not any(procs.alive(p) for p in tree))
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_reaped_process_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not procs.alive(proc.pid)
