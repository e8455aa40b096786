"""Free TCP ports for the servers we start (tests, benchmarks, the local Ray's agents).

Not the usual `bind(("127.0.0.1", 0))`: that port comes from the kernel's ephemeral range, the
range it also takes the local end of every outgoing connection from, and it is free again the
moment the probe closes. A starting Ray opens dozens of connections before its agents bind
their ports, so one of them can take the port in between. Measured: a metrics port taken that
way kills Ray's dashboard agent with EADDRINUSE, the raylet exits with it, and `ray.init` fails
after its fixed 30 s with "The current node timed out during startup" (how a CI run lost all 59
tests on the session's Ray). A port below the ephemeral range is never given to an outgoing
connection, so only a server binding it on purpose can take it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Ray's workers take 10002-19999 (its default min/max_worker_port); Milvus's 19530 is below too.
LOWEST = 20000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_EPHEMERAL_START = 32768  # Linux's default, IANA's is 49152
_handed_out: set[int] = set()  # this process's picks, so two pending picks never collide
_rng = random.Random()


def ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_START


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing is bound to on `host`, outside the ephemeral range where it can be."""
    top = ephemeral_start()
    if top - LOWEST >= 1000:
        for _ in range(200):
            port = _rng.randrange(LOWEST, top)
            if port not in _handed_out and bindable(port, host):
                _handed_out.add(port)
                return port
    # An ephemeral range reaching down here (or a full band): the kernel's pick, with its race.
    with socket.socket() as s:
        s.bind((host, 0))
        port = int(s.getsockname()[1])
    _handed_out.add(port)
    return port
