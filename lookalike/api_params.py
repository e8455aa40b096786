"""The API's request parameters and response bodies: pure functions, no app state.

Parsing turns query strings, form fields and JSON into typed values (raising ApiError with a
4xx status and a stable error code); the *_json helpers shape what the API returns.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from lookalike.catalog.manifest import PRODUCT_ID
from lookalike.catalog.product import Product
from lookalike.store.base import Filters, Hit


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    resp = JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)
    resp.headers["x-error-code"] = code  # read by the request observer for logs and metrics
    return resp


# -- parsing helpers (pure) ----------------------------------------------------------------------

def split_values(values: list[str] | None) -> tuple[str, ...]:
    """`?color=red&color=blue` and `?color=red,blue` both mean "red or blue"."""
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip() for p in str(v).split(",") if p.strip())
    return tuple(dict.fromkeys(out))


def parse_float(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ApiError(422, "invalid_parameter", f"{name} must be a number") from None
    if f != f or f in (float("inf"), float("-inf")) or f < 0:
        raise ApiError(422, "invalid_parameter", f"{name} must be a finite number >= 0")
    return f


def parse_top_k(value: Any, max_top_k: int) -> int:
    if value is None or value == "":
        return 10
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise ApiError(422, "invalid_parameter", "top_k must be an integer") from None
    if not 1 <= k <= max_top_k:
        raise ApiError(422, "invalid_parameter", f"top_k must be between 1 and {max_top_k}")
    return k


def parse_weight(value: Any) -> float:
    if value is None or value == "":
        return 0.5
    w = parse_float(value, "image_weight")
    if w is None or w > 1:
        raise ApiError(422, "invalid_parameter", "image_weight must be between 0 and 1")
    return w


INFER_MODES = ("boost", "filter", "off")


def parse_infer(value: Any) -> str:
    """What attributes inferred from the words and photo do: boost (default), filter, off."""
    if value is None or value == "":
        return "boost"
    if not isinstance(value, str) or value not in INFER_MODES:
        raise ApiError(422, "invalid_parameter", f"infer must be one of {', '.join(INFER_MODES)}")
    return value


STRATEGIES = ("average_vector", "best_score")
MAX_EXAMPLES = 50


def parse_ids(value: Any, name: str) -> tuple[str, ...]:
    """A list of product ids (JSON list, or comma-separated in a query string or form)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(422, "invalid_parameter", f"{name} must be a list of product ids")
    ids = split_values(value)
    if len(ids) > MAX_EXAMPLES:
        raise ApiError(422, "invalid_parameter", f"{name}: at most {MAX_EXAMPLES} ids")
    for pid in ids:
        check_product_id(pid)
    return ids


def parse_dropped(value: Any) -> tuple[str, ...]:
    """Inferred attributes a client removed: category, color, size, price, cheap."""
    from lookalike.rank.inferred import DROPPABLE

    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(422, "invalid_parameter", "drop_inferred must be a list of attribute names")
    names = split_values(value)
    bad = [n for n in names if n not in DROPPABLE]
    if bad:
        raise ApiError(422, "invalid_parameter",
                       f"drop_inferred: {bad[0]!r} is not one of {', '.join(DROPPABLE)}")
    return names


def parse_crop(value: Any) -> tuple[float, float, float, float] | None:
    """A crop rectangle in fractions of the photo: {"x","y","w","h"} or "x,y,w,h"."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts = value.split(",")
        value = dict(zip("xywh", parts)) if len(parts) == 4 else None
    if not isinstance(value, dict) or set(value) != set("xywh"):
        raise ApiError(422, "invalid_crop", 'crop must be {"x","y","w","h"} (fractions of the photo)')
    try:
        x, y, w, h = (float(value[k]) for k in "xywh")
    except (TypeError, ValueError):
        raise ApiError(422, "invalid_crop", "crop values must be numbers") from None
    if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1
            and x + w <= 1 + 1e-9 and y + h <= 1 + 1e-9):
        raise ApiError(422, "invalid_crop", "crop must lie inside the photo: 0 <= x, y; 0 < w, h; "
                       "x + w <= 1; y + h <= 1")
    return x, y, w, h


def parse_diversity(value: Any) -> float:
    if value is None or value == "":
        return 0.0
    d = parse_float(value, "diversity")
    if d is None or d > 1:
        raise ApiError(422, "invalid_parameter", "diversity must be between 0 and 1")
    return d


def parse_strategy(value: Any) -> str:
    if value is None or value == "":
        return "average_vector"
    if value not in STRATEGIES:
        raise ApiError(422, "invalid_parameter", f"strategy must be one of {', '.join(STRATEGIES)}")
    return str(value)


def parse_flag(value: Any, name: str) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off"):
        return False
    raise ApiError(422, "invalid_parameter", f"{name} must be true or false")


def make_filters(*, categories: Any, colors: Any, sizes: Any, min_price: Any, max_price: Any) -> Filters:
    def as_list(v: Any) -> list[str]:
        if v is None:
            return []
        if isinstance(v, str):
            return [v]
        if isinstance(v, list) and all(isinstance(x, (str, int, float)) for x in v):
            return [str(x) for x in v]
        raise ApiError(422, "invalid_parameter", "filters must be strings or lists of strings")

    f = Filters(categories=split_values(as_list(categories)), colors=split_values(as_list(colors)),
                sizes=split_values(as_list(sizes)), min_price=parse_float(min_price, "min_price"),
                max_price=parse_float(max_price, "max_price"))
    if f.min_price is not None and f.max_price is not None and f.min_price > f.max_price:
        raise ApiError(422, "invalid_parameter", "min_price must not exceed max_price")
    return f


def filters_from_query(request: Request) -> Filters:
    q = request.query_params
    return make_filters(categories=q.getlist("category"), colors=q.getlist("color"),
                        sizes=q.getlist("size"), min_price=q.get("min_price"),
                        max_price=q.get("max_price"))


def hit_json(hit: Hit) -> dict[str, Any]:
    p = hit.product
    return {"product_id": p.product_id, "score": round(hit.score, 6), "title": p.title,
            "category": p.category, "color": p.color, "size": p.size, "price": p.price,
            "image_url": f"/v1/products/{p.product_id}/images/{hit.image_index}",
            "attributes": p.attributes, "explain": hit.explain or None}


def understanding_json(outcome: Any) -> dict[str, Any]:
    """What the query was understood to ask for, so a client can show (and remove) it."""
    return {"inferred": {"mode": outcome.mode, **outcome.inferred.as_dict()},
            "relaxed": list(outcome.relaxed)}


def product_json(p: Product) -> dict[str, Any]:
    d = p.to_dict()
    d.pop("images")
    d["image_urls"] = [f"/v1/products/{p.product_id}/images/{n}" for n in range(len(p.images))]
    return d


def check_product_id(product_id: str) -> str:
    if not PRODUCT_ID.match(product_id):
        raise ApiError(422, "invalid_product_id", "product_id: 1-128 letters, digits, . _ : -")
    return product_id
