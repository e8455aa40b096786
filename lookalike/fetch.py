"""Fetching images by http(s) URL with timeouts, retries and a size limit."""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlparse

import httpx


class FetchError(ValueError):
    """The URL could not be fetched as an image (the message says why)."""


class TooLargeError(FetchError):
    pass


def _check_public(host: str) -> None:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve host {host!r}") from exc
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved:
            raise FetchError(f"refusing to fetch from a private address ({host})")


def fetch_bytes(
    url: str,
    *,
    timeout_s: float = 10.0,
    max_bytes: int = 10 * 1024 * 1024,
    retries: int = 2,
    allow_private: bool = False,
) -> bytes:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise FetchError("image_url must be an http(s) URL")
    if not allow_private:
        _check_public(parsed.hostname)
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            # No redirects: a public URL could otherwise redirect to a private address.
            with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=False) as resp:
                if 300 <= resp.status_code < 400:
                    raise FetchError("image_url redirected; give the final URL")
                if resp.status_code >= 400:
                    # 4xx will not get better on retry; 5xx might.
                    err = FetchError(f"image_url answered HTTP {resp.status_code}")
                    if resp.status_code < 500:
                        raise err
                    last = err
                else:
                    declared = int(resp.headers.get("content-length") or 0)
                    if declared > max_bytes:
                        raise TooLargeError(f"image is larger than {max_bytes} bytes")
                    chunks: list[bytes] = []
                    size = 0
                    for chunk in resp.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise TooLargeError(f"image is larger than {max_bytes} bytes")
                        chunks.append(chunk)
                    return b"".join(chunks)
        except FetchError:
            raise
        except httpx.HTTPError as exc:
            last = FetchError(f"cannot fetch image_url: {exc.__class__.__name__}")
        if attempt < retries:
            time.sleep(0.2 * 2**attempt)
    raise last or FetchError("cannot fetch image_url")
