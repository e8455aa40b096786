"""Count the gRPC calls a MilvusStore makes: real round trips, not a reading of the code.

    with count_calls(store) as calls:
        service.search(...)
    calls  # Counter({"Search": 1, "Query": 1})

A gRPC client interceptor goes on the channel of the store's pymilvus connection for the
block, so whatever pymilvus sends counts, hidden calls included (a describe before a search, an
iterator's pages). pymilvus shares one connection between the clients of one URI and token:
every client of that server counts while the block runs, so measure with nothing else running.
For tests and bench/store_calls.py; it relies on pymilvus' GrpcHandler keeping its channel in
`_final_channel` and its stub in `_stub` (checked on pymilvus 3.0.2).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from pymilvus.grpc_gen import milvus_pb2_grpc


class CallCounter(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Counts calls by method name ("Search", "Query", "DescribeCollection" ...)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()  # store calls run on worker threads

    def _count(self, details: grpc.ClientCallDetails) -> None:
        method = details.method
        name = (method.decode() if isinstance(method, bytes) else method).rsplit("/", 1)[-1]
        with self._lock:
            self.calls[name] += 1

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any,
                              request: Any) -> Any:
        self._count(client_call_details)
        return continuation(client_call_details, request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any,
                               request: Any) -> Any:
        self._count(client_call_details)
        return continuation(client_call_details, request)


def _handler(store: Any) -> Any:
    client = store.client
    client = getattr(client, "raw", client)  # HealingClient wraps the MilvusClient
    handler = getattr(client, "_handler", None)
    if handler is None or not hasattr(handler, "_final_channel"):
        raise RuntimeError("cannot count calls: this pymilvus keeps its gRPC channel elsewhere "
                           "(lookalike/store/call_count.py was checked on pymilvus 3.0.2)")
    return handler


@contextmanager
def count_calls(store: Any) -> Iterator[Counter[str]]:
    """The gRPC calls made on `store`'s connection inside the block, by method name."""
    handler = _handler(store)
    counter = CallCounter()
    channel, stub = handler._final_channel, handler._stub
    counted = grpc.intercept_channel(channel, counter)
    handler._final_channel, handler._stub = counted, milvus_pb2_grpc.MilvusServiceStub(counted)
    try:
        yield counter.calls
    finally:
        handler._final_channel, handler._stub = channel, stub
