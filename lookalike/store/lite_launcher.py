"""Entry point of the embedded milvus-lite server process that lookalike starts.

    python -m lookalike.store.lite_launcher --data-dir DIR --port 19530 [--token-file FILE]

Kept apart from the supervisor so that anything applied to milvus-lite (see
docs/milvus-lite-patch.md) touches only this process, never the caller's.
LOOKALIKE_LITE_PATCH=0 runs milvus-lite unpatched (tests and bench compare the two).

With --token-file (the supervisor always passes data_dir/milvus-lite.token, mode 0600), every
call must carry that token the way pymilvus sends one (`MilvusClient(uri, token=...)`: the
`authorization` header, base64 of the token); others get UNAUTHENTICATED. milvus-lite's server
has no authorization of its own and listens on TCP, which any local user can reach. The file is
named, not the token, so the token never shows in the process list.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import logging
import signal
import sys
from pathlib import Path
from typing import Any


def _warm_imports() -> None:
    """Import lazily-loaded modules once, before the server's threads race to: two concurrent
    first searches of a fresh (or just restarted) server failed with "partially initialized
    module 'scipy.sparse._bsr'" (a lazy import inside the search path, seen under load)."""
    try:
        import scipy.sparse  # noqa: F401
    except ImportError:  # not installed: nothing imports it lazily either
        pass


# Milvus's own servers enforce keepalive with MinTime 5 s and PermitWithoutStream; grpc's Python
# server defaults to one ping per 5 minutes and none without a call in flight.
_KEEPALIVE_POLICY = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
]


def _permit_client_keepalive() -> None:
    """Accept pymilvus's keepalive pings. pymilvus pings every 10 s, idle connections included;
    milvus-lite's server (grpc defaults) counts those as strikes and at the third answers
    GOAWAY "too_many_pings" (30-40 s idle; intermittent, as grpc's client pauses its pings). The next call on that client then fails, and so do reconnects to
    the same address from that process (grpc shares the failed subchannel): a router replica
    idle for a minute, or a test session's cached connection, lost its store. milvus-lite
    builds its server with fixed options, so the policy is added where it calls grpc.server."""
    import grpc

    build = grpc.server

    def server(*args, options=(), **kwargs):  # type: ignore[no-untyped-def]
        return build(*args, options=[*(options or ()), *_KEEPALIVE_POLICY], **kwargs)

    grpc.server = server


def _refusal(handler: Any) -> Any:
    """A handler of the same kind as `handler` that answers UNAUTHENTICATED."""
    import grpc

    def deny(request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED,
                      "milvus-lite: this server requires its token (data_dir/milvus-lite.token)")

    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        if getattr(handler, kind):
            return getattr(grpc, f"{kind}_rpc_method_handler")(
                deny, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
    return handler


def token_interceptor(token: str) -> Any:
    """A grpc server interceptor that lets through only calls carrying `token`."""
    import grpc

    expected = base64.b64encode(token.encode()).decode()

    class RequireToken(grpc.ServerInterceptor):
        def intercept_service(self, continuation: Any, details: Any) -> Any:
            handler = continuation(details)
            if handler is None:
                return None
            for key, value in details.invocation_metadata or ():
                sent = value.decode(errors="replace") if isinstance(value, bytes) else value
                if key == "authorization" and hmac.compare_digest(sent.encode(),
                                                                  expected.encode()):
                    return handler
            return _refusal(handler)

    return RequireToken()


def _require_token(token: str) -> None:
    """Every call needs the token: added where milvus-lite calls grpc.server, as above."""
    import grpc

    build = grpc.server
    interceptor = token_interceptor(token)

    def server(*args, interceptors=(), **kwargs):  # type: ignore[no-untyped-def]
        return build(*args, interceptors=[interceptor, *(interceptors or ())], **kwargs)

    grpc.server = server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=19530)
    parser.add_argument("--token-file", type=Path,
                        help="require the token in this file (mode 0600) from every client")
    args = parser.parse_args(argv)

    # Warnings (patch skipped, version mismatch) go to the supervisor's log file via stderr.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from lookalike.store import lite_patch

    lite_patch.serialize_writes()  # correctness: on, whatever the search patch does
    lite_patch.apply()  # before the server imports and wires milvus-lite's modules
    _warm_imports()
    _permit_client_keepalive()  # a transport setting: applied patched or not
    if args.token_file is not None:
        token = args.token_file.read_text().strip()
        if not token:
            raise SystemExit(f"token file {args.token_file} is empty")
        _require_token(token)
    from milvus_lite.adapter.grpc.server import run_server

    # SIGTERM -> KeyboardInterrupt, so run_server drains requests and closes the DB cleanly.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    run_server(args.data_dir, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
