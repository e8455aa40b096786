"""A MilvusClient wrapper that heals the two ways a running store goes away.

1. **The server restarted** (the supervisor restarts a killed milvus-lite; a Milvus query node
   restarts): collections come back *released* and every search, query and get answers
   "not loaded" until somebody loads them again. Nothing did, so one crash was a permanent
   outage. Here the first call that meets "not loaded" loads the collection (one thread at a
   time) and is retried once.
2. **The connection dropped**: pymilvus' gRPC channel reconnects by itself; a call made while
   the server is down fails at once (gRPC UNAVAILABLE). We never wait for the server inside a
   request: the caller gets a StoreUnavailable at once and answers a JSON 503.

The wrapper sits *around* MilvusStore's logic (versioned writes and the rest stay as they are):
MilvusStore calls `self.client.search(...)` exactly as before. Errors that the request caused
(an expression the server cannot parse, an illegal argument) are told apart from outages, so the
API answers them with a 4xx instead of "the store is unavailable".
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pymilvus import MilvusException

log = logging.getLogger(__name__)

NOT_LOADED_CODE = 101  # CollectionNotLoaded, legacy and new code alike (Milvus and milvus-lite)
ILLEGAL_ARGUMENT_CODES = {6, 1100}  # IllegalArgument (legacy), ParameterInvalid (Milvus 2.3+)
UNAVAILABLE_CODES = {2}  # pymilvus: "Fail connecting to server"
# A call that meets "not loaded" while another thread is loading waits this long for it, then
# fails (503): requests never queue behind a long load.
LOAD_WAIT_S = 1.5


def is_not_loaded(exc: MilvusException) -> bool:
    text = str(exc).lower()
    return (getattr(exc, "code", None) == NOT_LOADED_CODE or "not loaded" in text
            or "state 'released'" in text or "call load()" in text)


def is_client_error(exc: MilvusException) -> bool:
    """The request itself was refused (a bad expression or argument), not the store down."""
    return getattr(exc, "code", None) in ILLEGAL_ARGUMENT_CODES


class HealingClient:
    """Proxy over a MilvusClient for one collection: loads it again when it comes back released.

    `heals` counts the loads this client made after start-up (tests and /readyz read it).
    """

    def __init__(self, client: Any, collection: str,
                 load_kwargs: dict[str, Any] | None = None) -> None:
        self._client = client
        self._collection = collection
        self._load_kwargs = dict(load_kwargs or {})  # replica_number: loads again as configured
        self._load_lock = threading.Lock()
        self.heals = 0
        self.last_heal_s: float | None = None

    @property
    def raw(self) -> Any:
        return self._client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name in ("close", "load_collection"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except MilvusException as exc:
                if not is_not_loaded(exc):
                    raise
            # The server came back without the collection loaded: load it, then retry once.
            # (A failed call is never half applied: "not loaded" is checked before any work.)
            self.reload()
            return attr(*args, **kwargs)

        return call

    def reload(self) -> None:
        """Load the collection again; one thread at a time, others wait at most LOAD_WAIT_S."""
        if not self._load_lock.acquire(timeout=LOAD_WAIT_S):
            raise MilvusException(code=NOT_LOADED_CODE,
                                  message=f"collection {self._collection} is being loaded")
        try:
            started = time.monotonic()
            self._client.load_collection(self._collection, **self._load_kwargs)
            self.heals += 1
            self.last_heal_s = time.monotonic() - started
            log.warning("collection %s was released (store restarted): loaded it again in %.2fs",
                        self._collection, self.last_heal_s)
        finally:
            self._load_lock.release()
