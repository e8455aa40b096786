"""What the sync and async clients share: each endpoint's request as a `Call` (built once, sent
by either client), the error mapping, and the retry schedule. No I/O happens here."""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from lookalike.client._models import Facets, Filters, Info, Product, SearchResult

# A query photo or a product photo: a file path, the bytes, or a PIL image. For a query an
# http(s) URL string is also accepted: the server fetches it (the API's image_url).
ImageInput = str | Path | bytes | bytearray | memoryview | Any
FiltersInput = Filters | Mapping[str, Any] | None
FILTER_KEYS = ("category", "color", "size", "min_price", "max_price")
LIST_FILTERS = ("category", "color", "size")


class LookalikeError(Exception):
    """An error answer of the API: `status` (HTTP), `code` (the API's stable error code, e.g.
    `not_found`, `invalid_parameter`, `overloaded`) and `message`. `retry_after` is the
    server's Retry-After in seconds, when it sent one."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


@dataclass(frozen=True)
class Call:
    """One request, ready for either client; `parse` turns the 2xx answer into the result.
    It holds bytes, never open files, so a retry can send it again unchanged."""

    method: str
    path: str
    parse: Callable[[httpx.Response], Any]
    params: list[tuple[str, str]] | None = None
    json: dict[str, Any] | None = None
    data: list[tuple[str, str]] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    admin: bool = False  # a write: sent with the admin key

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"params": self.params}
        if self.json is not None:
            out["json"] = self.json
        if self.files is not None:
            # httpx takes repeated form fields as a dict of lists only.
            form: dict[str, list[str]] = {}
            for k, v in self.data or ():
                form.setdefault(k, []).append(v)
            out["data"], out["files"] = form, self.files
        return out


@dataclass(frozen=True)
class Retry:
    """Retries of a 503 `overloaded`: the server shed the request before doing any of it, so
    sending it again is safe, even a write. At most `retries` retries, the n-th (0-based) after
    `backoff * 2**n` seconds (at most `max_backoff`) and never sooner than the server's
    Retry-After. Any other error, 503s of a dependency included, is raised at once: those are
    not a queue that drains in a second, and the caller knows better whether to wait."""

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0

    def delay(self, n: int, error: LookalikeError) -> float | None:
        """Seconds to wait before retry `n` (0-based) after `error`, or None: raise it."""
        if error.status != 503 or error.code != "overloaded" or n >= self.retries:
            return None
        return max(min(self.max_backoff, self.backoff * 2 ** n), error.retry_after or 0.0)


DEFAULT_RETRY = Retry()


# -- errors ----------------------------------------------------------------------------------

def retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_of(resp: httpx.Response) -> LookalikeError:
    """The API's error JSON, {"error": {"code", "message"}}, as a LookalikeError. A body that is
    not that shape (a proxy's HTML page) keeps its status, with the code from the
    x-error-code header where there is one."""
    code = resp.headers.get("x-error-code") or "http_error"
    message = resp.text[:500] or resp.reason_phrase
    try:
        body = resp.json()
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code") or code)
        message = str(err.get("message") or message)
    return LookalikeError(resp.status_code, code, message,
                          retry_after(resp.headers.get("retry-after")))


# -- encoding --------------------------------------------------------------------------------

def is_url(image: Any) -> bool:
    return isinstance(image, str) and image[:8].lower().startswith(("http://", "https://"))


def image_file(image: ImageInput, name: str = "image") -> tuple[str, bytes, str]:
    """(filename, bytes, content type) of a path, bytes or PIL image. The server sniffs the
    format from the bytes; the content type is only a courtesy to proxies and logs."""
    if isinstance(image, (str, Path)):
        data = Path(image).read_bytes()
        return Path(image).name, data, content_type(data[:16])
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        return f"{name}.{content_type(data[:16]).split('/')[-1]}", data, content_type(data[:16])
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image; PIL imported only here
        buf = io.BytesIO()
        # PNG is lossless, so the server embeds exactly these pixels; CMYK and other modes PNG
        # cannot hold go through RGB.
        png_modes = ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16")
        (image if image.mode in png_modes else image.convert("RGB")).save(buf, "PNG")
        return f"{name}.png", buf.getvalue(), "image/png"
    raise TypeError(f"an image is a path, bytes, a PIL image or an http(s) URL, "
                    f"not {type(image).__name__}")


def content_type(head: bytes) -> str:
    for magic, ctype in ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG", "image/png"),
                         (b"GIF8", "image/gif"), (b"BM", "image/bmp")):
        if head.startswith(magic):
            return ctype
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def as_strings(value: Any) -> list[str]:
    """A filter value or a list of them: a single string is a list of one (never its letters)."""
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [str(value)]
    return [str(v) for v in value]


def filter_values(filters: FiltersInput) -> dict[str, Any]:
    """The filters as {category, color, size: [str]; min_price, max_price: float | None}. An
    unknown key is a ValueError here, as it is a 422 at the API: a misspelt filter must never
    be a filter silently not applied."""
    if filters is None:
        return {}
    raw = dataclasses.asdict(filters) if isinstance(filters, Filters) else dict(filters)
    unknown = sorted(set(raw) - set(FILTER_KEYS))
    if unknown:
        raise ValueError(f"unknown filter(s): {', '.join(unknown)}; use {', '.join(FILTER_KEYS)}")
    out: dict[str, Any] = {k: as_strings(raw.get(k)) for k in LIST_FILTERS}
    out.update({k: raw.get(k) for k in ("min_price", "max_price")})
    return out


def filter_pairs(filters: FiltersInput) -> list[tuple[str, str]]:
    """Query-string or form fields: one field per value (`color=red&color=blue`)."""
    values = filter_values(filters)
    pairs = [(k, v) for k in LIST_FILTERS for v in values.get(k, ())]
    return pairs + [(k, str(values[k])) for k in ("min_price", "max_price")
                    if values.get(k) is not None]


def comma_value(filters: FiltersInput) -> str | None:
    """A list filter's value holding a comma, if any: the API reads a query string's or form's
    commas as separators, so such a value can only travel in JSON (where lists are as given)."""
    values = filter_values(filters)
    return next((v for k in LIST_FILTERS for v in values.get(k, ()) if "," in v), None)


def filter_json(filters: FiltersInput) -> dict[str, Any] | None:
    """The JSON bodies' `filters` object (SearchFilters): lists, and price as {gte, lte}."""
    values = filter_values(filters)
    out: dict[str, Any] = {k: values[k] for k in LIST_FILTERS if values.get(k)}
    price = {bound: values[k] for bound, k in (("gte", "min_price"), ("lte", "max_price"))
             if values.get(k) is not None}
    if price:
        out["price"] = price
    return out or None


def product_path(product_id: str, tail: str = "") -> str:
    # Quoted whole, so an id like "../x" is a 422 from the API, never another route.
    return f"/v1/products/{quote(str(product_id), safe='')}{tail}"


def flag(value: bool) -> str:
    return "true" if value else "false"


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    """Parameters left as None are not sent: the API's defaults apply."""
    return {k: v for k, v in d.items() if v is not None}


def ids(value: str | Sequence[str] | None) -> list[str] | None:
    return None if value is None else as_strings(value)


# -- the endpoints ---------------------------------------------------------------------------

def search(*, text: str | None, image: ImageInput | None, filters: FiltersInput, top_k: int,
           image_weight: float | None, infer: str | None,
           crop: tuple[float, float, float, float] | None,
           not_like: str | Sequence[str] | None, diversity: float | None,
           drop_inferred: Sequence[str] | None, collapse_variants: bool | None,
           offset: int | None = None) -> Call:
    """POST /v1/search. A photo to upload goes as multipart/form-data (the bytes as they are,
    and the route the front proxy queues photo searches on); otherwise, or when a filter value
    holds a comma (a form's commas separate values), one JSON body carries the text, the image
    (a URL, or the bytes as base64) and every option."""
    if text is None and image is None:
        raise ValueError("give at least one of text and image")
    parse = search_result
    if image is None or is_url(image) or comma_value(filters) is not None:
        photo = ({"image_url": image} if image is None or is_url(image)
                 else {"image_base64": base64.b64encode(image_file(image)[1]).decode()})
        body = drop_none({"text": text, **photo, "top_k": top_k,
                          "image_weight": image_weight, "filters": filter_json(filters),
                          "infer": infer, "not_like": ids(not_like), "diversity": diversity,
                          "drop_inferred": ids(drop_inferred),
                          "collapse_variants": collapse_variants, "offset": offset,
                          "crop": None if crop is None else dict(zip("xywh", crop))})
        return Call("POST", "/v1/search", parse, json=body)
    scalars = drop_none({"text": text, "top_k": top_k, "image_weight": image_weight,
                         "infer": infer, "diversity": diversity, "offset": offset,
                         "crop": None if crop is None else ",".join(str(v) for v in crop),
                         "collapse_variants": None if collapse_variants is None
                         else flag(collapse_variants)})
    data = [(k, str(v)) for k, v in scalars.items()] + filter_pairs(filters)
    data += [("not_like", v) for v in ids(not_like) or ()]
    data += [("drop_inferred", v) for v in ids(drop_inferred) or ()]
    return Call("POST", "/v1/search", parse, data=data, files=[("image", image_file(image))])


def similar(product_id: str, *, top_k: int, filters: FiltersInput, cheaper: bool,
            other_color: bool, same_category: bool, offset: int | None = None,
            collapse_variants: bool | None = None) -> Call:
    """GET /v1/products/{id}/similar: filters and narrowing flags in the query string."""
    comma = comma_value(filters)
    if comma is not None:
        raise ValueError(f"the filter value {comma[:40]!r} holds a comma, which a query string "
                         "separates values by; recommend(positive=[product_id]) sends filters "
                         "as JSON, where a value may hold commas")
    params = [("top_k", str(top_k)), *filter_pairs(filters)]
    params += [(k, "true") for k, on in (("cheaper", cheaper), ("other_color", other_color),
                                         ("same_category", same_category)) if on]
    if offset is not None:
        params.append(("offset", str(offset)))
    if collapse_variants is not None:
        params.append(("collapse_variants", flag(collapse_variants)))
    return Call("GET", product_path(product_id, "/similar"), search_result,
                params=params)


def recommend(*, positive: str | Sequence[str] | None, negative: str | Sequence[str] | None,
              image: ImageInput | None, strategy: str | None, top_k: int,
              filters: FiltersInput, offset: int | None = None,
              collapse_variants: bool | None = None) -> Call:
    """POST /v1/recommend, JSON only: a photo goes as image_url or, its bytes, image_base64."""
    photo: dict[str, Any] = {}
    if is_url(image):
        photo["image_url"] = image
    elif image is not None:
        photo["image_base64"] = base64.b64encode(image_file(image)[1]).decode()
    body = drop_none({"positive": ids(positive), "negative": ids(negative), "strategy": strategy,
                      "top_k": top_k, "filters": filter_json(filters), "offset": offset,
                      "collapse_variants": collapse_variants, **photo})
    return Call("POST", "/v1/recommend", search_result, json=body)


PAGED = ("search", "similar", "recommend")


def paged(method: str, kwargs: dict[str, Any]) -> int:
    """Checks a `pages` call; the offset of its first page."""
    if method not in PAGED:
        raise ValueError(f"pages() follows one of {', '.join(PAGED)}, not {method!r}")
    return int(kwargs.pop("offset", None) or 0)


def search_result(resp: httpx.Response) -> SearchResult:
    return SearchResult.from_json(resp.json())


def facets() -> Call:
    return Call("GET", "/v1/facets", lambda r: Facets.from_json(r.json()))


def info() -> Call:
    return Call("GET", "/v1/info", lambda r: Info.from_json(r.json()))


def get(product_id: str) -> Call:
    return Call("GET", product_path(product_id), lambda r: Product.from_json(r.json()))


def metadata_of(product: Product | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(product, Product):
        return product.metadata()
    if isinstance(product, Mapping):
        return dict(product)
    raise TypeError(f"a product is a dict or a lookalike.client.Product, "
                    f"not {type(product).__name__}")


def put(product: Product | Mapping[str, Any], images: ImageInput | Sequence[ImageInput]) -> Call:
    """PUT /v1/products/{id} (admin), multipart: `metadata` as a JSON text field and one `image`
    file field per photo. The id comes from the product's own product_id."""
    meta = metadata_of(product)
    product_id = meta.get("product_id")
    if not product_id:
        raise ValueError("the product needs a product_id")
    one = isinstance(images, (str, Path, bytes, bytearray, memoryview)) or hasattr(images, "mode")
    photos = [images] if one else list(images)  # type: ignore[arg-type]
    if not photos:
        raise ValueError("give at least one image")
    if any(is_url(p) for p in photos):
        raise ValueError("put uploads image files: give paths, bytes or PIL images, not URLs")
    files = [("image", image_file(p, f"image{n}")) for n, p in enumerate(photos)]
    return Call("PUT", product_path(product_id), lambda r: Product.from_json(r.json()),
                data=[("metadata", json.dumps(meta))], files=files, admin=True)


def delete(product_id: str) -> Call:
    return Call("DELETE", product_path(product_id), lambda r: None, admin=True)
