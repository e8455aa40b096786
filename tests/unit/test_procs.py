"""The process-table helpers that `lookalike serve` ends its own tree with, on real processes."""

from __future__ import annotations

import subprocess
import sys
import time

from lookalike import procs

# A child that starts a grandchild ignoring SIGTERM (as a stuck worker would), then waits.
# The grandchild touches a file once it ignores SIGTERM: on a busy machine its interpreter can
# take longer to start than the grace period, and a SIGTERM before that would simply end it.
TREE = """
import signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c",
    "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "pathlib.Path(sys.argv[1]).touch(); time.sleep(600)", sys.argv[1]])
time.sleep(600)
"""


def wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_descendants_and_end_leave_nothing_of_the_tree(tmp_path) -> None:
    ignoring = tmp_path / "ignoring-sigterm"
    proc = subprocess.Popen([sys.executable, "-c", TREE, str(ignoring)])
    try:
        wait_for(lambda: len(procs.descendants(proc.pid)) == 1 and ignoring.exists())
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
