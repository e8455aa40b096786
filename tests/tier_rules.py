"""What an audit event (PEP 578) does that a tier may forbid: a pure function, so the rules
themselves are unit-tested (tests/unit/test_tier_rules.py) and the hook in tests/tiers.py
stays a few lines."""

from __future__ import annotations

import ipaddress
import os
import shlex
import socket
from collections.abc import Sequence
from typing import Any

Roots = tuple[tuple[str, ...], tuple[str, ...]]


class NotInTheTier(RuntimeError):
    pass


# Processes that are Ray or Milvus, by their command line: Ray's own daemons (ray.init spawns
# them with subprocess), its CLIs, our entry points that start one or the other.
_RAY = {"gcs_server", "raylet", "ray", "serve"}
_RAY_STARTS = ("ingest_job.py", "serve_app.py")
_MILVUS = {"milvus"}
_MILVUS_STARTS = ("lookalike.store.lite_server", "lookalike.launch.lite_launcher")
_CLI_STARTS = {"serve", "demo", "ingest", "start"}
_LOCAL_NAMES = {"", "localhost", "localhost.localdomain", socket.gethostname()}


def loopback(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # an AF_UNIX path
        return True
    host = str(address[0]) if isinstance(address, tuple) and address else ""
    return local_name(host)


def local_name(host: object) -> bool:
    """A host that resolves without the network: empty, localhost, a loopback address."""
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None or host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _literal(host: object) -> bool:
    try:
        ipaddress.ip_address(str(host))
    except ValueError:
        return False
    return True


def starts(argv: Sequence[Any] | str) -> str | None:
    """"ray" or "milvus" when the command line starts one, else None."""
    if isinstance(argv, str):  # shell=True
        argv = shlex.split(argv)
    words = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in argv]
    names = [os.path.basename(w) for w in words]
    if "--help" in words or "-h" in words:  # argparse prints the usage and exits, starting nothing
        return None
    # `python -m lookalike.cli serve` and the installed `lookalike serve` start both
    cli = [i for i, n in enumerate(names) if n in ("lookalike", "lookalike.cli")]
    if (names and names[0] in _RAY or any(w.endswith(s) for w in words for s in _RAY_STARTS)
            or any(set(names[i + 1:i + 2]) & _CLI_STARTS for i in cli)):
        return "ray"
    if names and names[0] in _MILVUS or any(w.endswith(s) for w in words for s in _MILVUS_STARTS):
        return "milvus"
    return None


# In a packaged model's folder the tokenizer's files are fair game for a unit test; these are
# what only loading the model reads (the weights, and sentence-transformers' own configs).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack")
MODEL_ONLY_FILES = ("modules.json", "config_sentence_transformers.json")


def is_weights(path: str, roots: Roots) -> bool:
    """roots: (folders where every file is a model's, packaged model folders)."""
    whole, packaged = roots
    if any(path.startswith(root) for root in whole):
        return True
    return (any(path.startswith(root) for root in packaged)
            and (path.endswith(WEIGHT_SUFFIXES) or os.path.basename(path) in MODEL_ONLY_FILES))


def violation(event: str, args: tuple[Any, ...], roots: Roots) -> tuple[str, str] | None:
    """(kind, what) when the event loads weights, starts Ray or Milvus, or uses the network:
    kind is "weights", "ray", "milvus" or "network"; None for anything else."""
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if is_weights(path, roots):
            return "weights", f"opening model weights ({path})"
    elif event in ("socket.connect", "socket.sendto") and not loopback(args[1]):
        return "network", f"connecting to {args[1]!r}"
    elif event in ("socket.getaddrinfo", "socket.gethostbyname") and not (
            local_name(args[0]) or _literal(args[0])):
        return "network", f"resolving {args[0]!r}"
    elif event == "subprocess.Popen":
        kind = starts(args[1] or [args[0]])
        if kind:
            return kind, f"starting {args[1] or args[0]!r}"
    return None
