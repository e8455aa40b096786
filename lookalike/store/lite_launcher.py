"""Entry point of the embedded milvus-lite server process that lookalike starts.

    python -m lookalike.store.lite_launcher --data-dir DIR --port 19530

Kept apart from the supervisor so that anything applied to milvus-lite (see
docs/milvus-lite-patch.md) touches only this process, never the caller's.
LOOKALIKE_LITE_PATCH=0 runs milvus-lite unpatched (tests and bench compare the two).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys


def _warm_imports() -> None:
    """Import lazily-loaded modules once, before the server's threads race to: two concurrent
    first searches of a fresh (or just restarted) server failed with "partially initialized
    module 'scipy.sparse._bsr'" (a lazy import inside the search path, seen under load)."""
    try:
        import scipy.sparse  # noqa: F401
    except ImportError:  # not installed: nothing imports it lazily either
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=19530)
    args = parser.parse_args(argv)

    # Warnings (patch skipped, version mismatch) go to the supervisor's log file via stderr.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from lookalike.store import lite_patch

    lite_patch.apply()  # before the server imports and wires milvus-lite's modules
    _warm_imports()
    from milvus_lite.adapter.grpc.server import run_server

    # SIGTERM -> KeyboardInterrupt, so run_server drains requests and closes the DB cleanly.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    run_server(args.data_dir, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
