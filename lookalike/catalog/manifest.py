"""The catalogue manifest: JSONL, CSV or Parquet, one row per product.

Columns: product_id (required, unique), title, description, category, color, size, price,
images (one or more local paths relative to the manifest, or http(s) URLs; in CSV separated by
'|' or given as a JSON list). Any other column becomes an attribute.
A bad row is reported as a RowError (row, field, reason) and skipped; the load goes on. The
fields are checked by a Pydantic model (ManifestRow), the first bad one is the row's error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo

from lookalike.catalog.product import CORE_FIELDS, Product
from lookalike.image_refs import CATALOG, catalog_ref, catalog_rel

PRODUCT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
MAX_TEXT = 4000
MAX_IMAGES = 16


@dataclass(frozen=True)
class RowError:
    row: int  # 1-based data row number (header not counted)
    field: str
    reason: str
    # Set when the row's id was valid: a product whose row went bad is still "in the
    # manifest", so --delete-missing must not delete it (a typo must never lose data).
    product_id: str | None = None

    def __str__(self) -> str:
        return f"row {self.row}: {self.field}: {self.reason}"


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _product_id(v: Any) -> str:
    if _empty(v):
        raise ValueError("required")
    pid = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip()
    if not PRODUCT_ID.match(pid):
        raise ValueError(f"{pid[:40]!r}: use 1-128 letters, digits, . _ : -")
    return pid


def _text(limit: int) -> Any:
    def check(v: Any) -> str:
        if _empty(v):
            return ""
        s = str(v).strip()
        if len(s) > limit:
            raise ValueError(f"longer than {limit} characters")
        return s
    return BeforeValidator(check)


def _price(v: Any) -> float | None:
    if _empty(v):
        return None
    if isinstance(v, bool):  # float(True) is 1.0: a JSON true is no price
        # pydantic reports ValueError as a validation error; a TypeError would escape it.
        raise ValueError(f"not a number: {v!r}")  # noqa: TRY004
    try:
        p = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {v!r}") from None
    if not math.isfinite(p) or p < 0:
        raise ValueError(f"must be a finite number >= 0, got {v!r}")
    return p


def _images(v: Any, info: ValidationInfo) -> tuple[str, ...]:
    if _empty(v):
        raise ValueError("at least one image is required")
    if isinstance(v, str):
        s = v.strip()
        items = json.loads(s) if s.startswith("[") else [p for p in s.split("|")]
    else:
        try:
            items = list(v)
        except TypeError as exc:  # pydantic passes only ValueErrors on as field errors
            raise ValueError(str(exc)) from None
    base_dir: Path | None = (info.context or {}).get("base_dir")
    catalog_root: Path | None = (info.context or {}).get("catalog_root")
    refs: list[str] = []
    for item in items:
        ref = str(item).strip()
        if not ref:
            continue
        if ref.startswith(("http://", "https://")):
            refs.append(ref)
        elif ref.startswith(CATALOG):
            if catalog_rel(ref) is None:
                raise ValueError(f"{ref[:80]!r}: a catalog: reference is a relative path "
                                 "inside the catalogue root")
            refs.append(ref)
        elif "://" in ref:
            raise ValueError(f"unsupported image scheme in {ref!r} (local path or http(s) URL)")
        else:
            path = Path(ref)
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            # Under the catalogue root: stored as `catalog:<relative>`, resolvable on any node.
            refs.append(catalog_ref(str(path), catalog_root))
    if not refs:
        raise ValueError("at least one image is required")
    if len(refs) > MAX_IMAGES:
        raise ValueError(f"at most {MAX_IMAGES} images per product")
    return tuple(refs)


class ManifestRow(BaseModel):
    """One manifest row's core fields, validated in this order (the first bad one is reported).
    Missing fields are validated too (validate_default), so "required" reads the same as empty."""

    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=True)

    product_id: Annotated[str, BeforeValidator(_product_id)] = None  # type: ignore[assignment]
    title: Annotated[str, _text(MAX_TEXT)] = ""
    description: Annotated[str, _text(MAX_TEXT)] = ""
    category: Annotated[str, _text(100)] = ""
    color: Annotated[str, _text(100)] = ""
    size: Annotated[str, _text(100)] = ""
    price: Annotated[float | None, BeforeValidator(_price)] = None
    images: Annotated[tuple[str, ...], BeforeValidator(_images)] = None  # type: ignore[assignment]


def _reason(error: Any) -> str:
    exc = (error.get("ctx") or {}).get("error")
    return str(exc) if exc is not None else str(error["msg"])


def parse_row(raw: dict[str, Any], row: int, base_dir: Path | None = None,
              catalog_root: Path | None = None) -> Product | RowError:
    """Validate one manifest row. Never raises for bad data: returns a RowError instead.
    Image paths under `catalog_root` become `catalog:` references (lookalike/image_refs.py)."""
    try:
        fields = ManifestRow.model_validate(raw, context={"base_dir": base_dir,
                                                          "catalog_root": catalog_root})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "*"
        # The id was valid when the first bad field is another one.
        pid = None if name == "product_id" else _product_id(raw.get("product_id"))
        return RowError(row, name, _reason(first), pid)
    group = raw.get("group_id")  # a variant group (lookalike/variants.py); wins over detection
    if not _empty(group) and not PRODUCT_ID.match(str(group).strip()):
        return RowError(row, "group_id", f"{str(group)[:40]!r}: use 1-128 letters, digits, . _ : -",
                        fields.product_id)
    attributes = {k: _plain(v) for k, v in raw.items() if k not in CORE_FIELDS and not _empty(v)}
    return Product(**fields.model_dump(), attributes=attributes)


def _plain(v: Any) -> Any:
    """JSON-safe attribute values (numpy/arrow scalars become Python ones)."""
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return json.loads(json.dumps(v, default=str))


def read_table(path: Path) -> Iterator[list[dict[str, Any]]]:
    """Yield the manifest's rows in chunks, keeping memory bounded for large catalogues."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        chunk: list[dict[str, Any]] = []
        with path.open(encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    obj = {"__error__": f"invalid JSON: {exc.msg}"}
                chunk.append(obj if isinstance(obj, dict) else {"__error__": "not a JSON object"})
                if len(chunk) >= 1000:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk
    elif suffix == ".csv":
        # Every column as a string: the validator owns the typing, and ids like 007 keep zeros.
        opts = pacsv.ConvertOptions(column_types={}, strings_can_be_null=True)
        reader = pacsv.open_csv(path, convert_options=opts, read_options=pacsv.ReadOptions(block_size=1 << 20))
        schema = reader.schema
        reader.close()
        opts = pacsv.ConvertOptions(column_types={n: pa.string() for n in schema.names},
                                    strings_can_be_null=True)
        reader = pacsv.open_csv(path, convert_options=opts, read_options=pacsv.ReadOptions(block_size=1 << 20))
        for batch in reader:
            yield batch.to_pylist()
    elif suffix in (".parquet", ".pq"):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1000):
            yield batch.to_pylist()
    else:
        raise ValueError(f"unsupported manifest type {suffix!r}: use .jsonl, .csv or .parquet")


def iter_manifest(path: str | Path,
                  catalog_root: Path | None = None) -> Iterator[Product | RowError]:
    """Products and row errors in manifest order; duplicate product_ids are errors after the first."""
    path = Path(path)
    base_dir = path.parent.resolve()
    seen: set[str] = set()
    row = 0
    for chunk in read_table(path):
        for raw in chunk:
            row += 1
            if "__error__" in raw:
                yield RowError(row, "*", raw["__error__"])
                continue
            item = parse_row(raw, row, base_dir, catalog_root)
            if isinstance(item, Product):
                if item.product_id in seen:
                    yield RowError(row, "product_id", f"duplicate of an earlier row: {item.product_id!r}")
                    continue
                seen.add(item.product_id)
            yield item


def load_manifest(path: str | Path) -> tuple[list[Product], list[RowError]]:
    products: list[Product] = []
    errors: list[RowError] = []
    for item in iter_manifest(path):
        (products if isinstance(item, Product) else errors).append(item)
    return products, errors
