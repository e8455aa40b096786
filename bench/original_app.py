"""The original design, as a shop would build it without lookalike: one synchronous WSGI process.

    LOOKALIKE_DATA_DIR=... LOOKALIKE_LITE_PORT=... LOOKALIKE_COLLECTION=... \\
        python -m bench.original_app --port 8300 [--torch-threads 2]

The original lookalike was a Flask app. Flask is not one of our dependencies, so this is the
standard library's WSGI server (wsgiref: one thread, one request at a time, HTTP/1.0) with
python-multipart (a dependency) for the upload. POST /v1/search with a photo: decode it, the
same image weights on torch (every core for one forward at batch 1, the best one process can
do), one plain store search (bench/one_client.plain_search), the top 10 as JSON. No text
search, no filters, no ranking, no variants: its answer is poorer than lookalike's, so a
comparison flatters it. GET /readyz answers 200. Binds loopback only; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from bench.one_client import plain_search

Start = Callable[[str, list[tuple[str, str]]], Any]


class Server(WSGIServer):
    # socketserver's backlog is 5: 16 clients connecting at once would see refused or
    # retried connects (a 1 s SYN retry), which is the backlog's fault, not the design's.
    request_queue_size = 256


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def upload(environ: dict[str, Any]) -> bytes:
    """The `image` part of a multipart/form-data body."""
    from python_multipart import parse_form

    found: list[bytes] = []

    def on_file(f: Any) -> None:
        if f.field_name == b"image":
            f.file_object.seek(0)
            found.append(f.file_object.read())

    headers = {"Content-Type": environ.get("CONTENT_TYPE", "").encode(),
               "Content-Length": environ.get("CONTENT_LENGTH", "0").encode()}
    parse_form(headers, environ["wsgi.input"], lambda _field: None, on_file)
    if not found:
        raise ValueError("no image part")
    return found[0]


def build(*, torch_threads: int) -> Callable[[dict[str, Any], Start], Iterable[bytes]]:
    from pymilvus import MilvusClient

    from lookalike.config import Settings
    from lookalike.embedding import ImageEmbedder
    from lookalike.images import decode_image

    settings = Settings()
    embedder = ImageEmbedder(num_threads=torch_threads)  # torch, never ONNX: the original's
    client = MilvusClient(uri=settings.resolved_milvus_uri,
                          token=settings.resolved_milvus_token())
    collection = settings.collection
    # A restarted milvus-lite has every collection released; searching one fails until loaded.
    client.load_collection(collection)

    def app(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        status, body = "404 Not Found", {"detail": "not found"}
        if path == "/readyz":
            status, body = "200 OK", {"ready": True}
        elif path == "/v1/search" and method == "POST":
            try:
                image = decode_image(upload(environ))
            except ValueError as e:
                status, body = "400 Bad Request", {"detail": str(e)}
            else:
                vector = embedder.embed([image])[0]
                status = "200 OK"
                body = {"results": plain_search(client, collection, vector, "image_vector")}
        data = json.dumps(body).encode()
        start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    server = make_server("127.0.0.1", args.port, build(torch_threads=args.torch_threads),
                         server_class=Server, handler_class=QuietHandler)
    # serve_forever blocks this thread; shutdown() must come from another one.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
