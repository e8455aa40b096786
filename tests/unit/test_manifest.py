import json
import math
from pathlib import Path

import pandas as pd
import pytest

from lookalike.catalog import Product, RowError, load_manifest, parse_row

ROWS = [
    {"product_id": "a1", "title": "Red dress", "category": "dress", "color": "red", "size": "M",
     "price": 19.5, "images": ["img/a.jpg", "https://example.com/b.jpg"], "brand": "X"},
    {"product_id": "", "title": "no id", "images": ["img/c.jpg"]},
    {"product_id": "a2", "price": "cheap", "images": ["img/c.jpg"]},
    {"product_id": "a3", "title": "no image"},
    {"product_id": "a1", "title": "duplicate", "images": ["img/d.jpg"]},
    {"product_id": "a4", "price": -3, "images": ["img/e.jpg"]},
    {"product_id": "a5", "images": ["ftp://host/x.jpg"]},
    {"product_id": "bad id!", "images": ["x.jpg"]},
]
EXPECTED_ERRORS = [(2, "product_id"), (3, "price"), (4, "images"), (5, "product_id"), (6, "price"),
                   (7, "images"), (8, "product_id")]


def write(tmp_path: Path, fmt: str) -> Path:
    if fmt == "jsonl":
        path = tmp_path / "m.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    else:
        rows = [{**r, "images": "|".join(r.get("images", []))} for r in ROWS]
        df = pd.DataFrame(rows)
        path = tmp_path / f"m.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            df = df.astype({"price": str})
            df.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_formats_give_products_and_row_errors(tmp_path: Path, fmt: str) -> None:
    products, errors = load_manifest(write(tmp_path, fmt))
    assert [p.product_id for p in products] == ["a1"]
    a1 = products[0]
    assert a1.images == (str(tmp_path.resolve() / "img/a.jpg"), "https://example.com/b.jpg")
    assert a1.price == 19.5 and a1.attributes == {"brand": "X"}
    assert [(e.row, e.field) for e in errors] == EXPECTED_ERRORS
    assert all(e.reason for e in errors)


def test_invalid_json_line_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"product_id": "ok", "images": ["a.jpg"]}\n{not json\n[1, 2]\n')
    products, errors = load_manifest(path)
    assert [p.product_id for p in products] == ["ok"]
    assert [(e.row, e.field) for e in errors] == [(2, "*"), (3, "*")]
    assert "row 2" in str(errors[0])


def test_parse_row_keeps_ids_as_strings() -> None:
    item = parse_row({"product_id": "007", "images": "a.jpg|b.jpg"}, 1)
    assert isinstance(item, Product) and item.product_id == "007" and len(item.images) == 2
    assert isinstance(parse_row({"product_id": "x" * 200, "images": "a.jpg"}, 9), RowError)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "m.xml"
    path.write_text("<x/>")
    with pytest.raises(ValueError, match="unsupported manifest"):
        load_manifest(path)


def test_content_hash_tracks_changes() -> None:
    p = Product("a", title="t", images=("x.jpg",))
    assert p.content_hash(("d1",)) == Product("a", title="t", images=("x.jpg",)).content_hash(("d1",))
    assert p.content_hash(("d1",)) != p.content_hash(("d2",))
    assert p.content_hash() != Product("a", title="t2", images=("x.jpg",)).content_hash()


def test_content_hash_follows_the_pixels_not_where_the_files_live() -> None:
    here = Product("a", title="t", images=("/data/cat/x.jpg", "/data/cat/y.jpg"))
    moved = Product("a", title="t", images=("/mnt/new/x.jpg", "https://cdn.example/y.jpg"))
    assert here.content_hash(("d1", "d2")) == moved.content_hash(("d1", "d2"))
    assert here.content_hash(("d1", "d2")) != here.content_hash(("d2", "d1"))  # photo order
    assert here.content_hash(("d1", "d2")) != here.content_hash(("d1",))


def test_row_errors_carry_the_product_id_when_it_was_valid() -> None:
    bad_price = parse_row({"product_id": "p9", "price": "cheap", "images": "a.jpg"}, 4)
    assert isinstance(bad_price, RowError) and bad_price.product_id == "p9"
    no_id = parse_row({"product_id": "", "images": "a.jpg"}, 5)
    assert isinstance(no_id, RowError) and no_id.product_id is None


# What the hand-rolled validator returned for each row, recorded before the Pydantic model
# replaced it (ManifestRow): the same Product, or the same field, reason and product_id.
CASES = [
    # (raw row, the hand-rolled validator's result: a Product, or (field, reason, product_id))
    ({"images": "a.jpg"}, ("product_id", "required", None)),
    ({"product_id": None, "images": "a.jpg"}, ("product_id", "required", None)),
    ({"product_id": "  ", "images": "a.jpg"}, ("product_id", "required", None)),
    ({"product_id": math.nan, "images": "a.jpg"}, ("product_id", "required", None)),
    ({"product_id": "bad id!", "images": "a.jpg"}, ("product_id", "'bad id!': use 1-128 letters, digits, . _ : -", None)),
    ({"product_id": "x" * 200, "images": "a.jpg"}, ("product_id", repr("x" * 40) + ": use 1-128 letters, digits, . _ : -", None)),
    ({"product_id": 12.0, "images": "a.jpg"}, Product("12", images=("/base/a.jpg",))),
    ({"product_id": 12.5, "images": "a.jpg"}, Product("12.5", images=("/base/a.jpg",))),
    ({"product_id": 7, "images": "a.jpg"}, Product("7", images=("/base/a.jpg",))),
    ({"product_id": "p1", "title": "t" * 4001, "images": "a.jpg"}, ("title", "longer than 4000 characters", "p1")),
    ({"product_id": "p1", "color": "c" * 101, "images": "a.jpg"}, ("color", "longer than 100 characters", "p1")),
    ({"product_id": "p1", "title": "t" * 4001, "price": "x"}, ("title", "longer than 4000 characters", "p1")),
    ({"product_id": "p1", "price": "cheap", "images": "a.jpg"}, ("price", "not a number: 'cheap'", "p1")),
    ({"product_id": "p1", "price": [1], "images": "a.jpg"}, ("price", "not a number: [1]", "p1")),
    ({"product_id": "p1", "price": -1, "images": "a.jpg"}, ("price", "must be a finite number >= 0, got -1", "p1")),
    ({"product_id": "p1", "price": "inf", "images": "a.jpg"}, ("price", "must be a finite number >= 0, got 'inf'", "p1")),
    ({"product_id": "p1", "price": "cheap"}, ("price", "not a number: 'cheap'", "p1")),
    ({"product_id": "p1"}, ("images", "at least one image is required", "p1")),
    ({"product_id": "p1", "images": " | "}, ("images", "at least one image is required", "p1")),
    ({"product_id": "p1", "images": []}, ("images", "at least one image is required", "p1")),
    ({"product_id": "p1", "images": "[1, "}, ("images", "Expecting value: line 1 column 4 (char 3)", "p1")),
    ({"product_id": "p1", "images": 5}, ("images", "'int' object is not iterable", "p1")),
    ({"product_id": "p1", "images": "ftp://h/x.jpg"}, ("images", "unsupported image scheme in 'ftp://h/x.jpg' (local path or http(s) URL)", "p1")),
    ({"product_id": "p1", "images": "|".join(f"{i}.jpg" for i in range(17))}, ("images", "at most 16 images per product", "p1")),
    ({"product_id": "p1", "title": " Red ", "price": "19.5", "images": '["a.jpg", "https://x/b.jpg"]', "brand": "X", "empty": "", "n": math.nan}, Product("p1", title="Red", price=19.5, images=("/base/a.jpg", "https://x/b.jpg"), attributes={"brand": "X"})),
    ({"product_id": "p1", "images": ["/abs/a.jpg", " b.jpg ", ""], "size": 42}, Product("p1", size="42", images=("/abs/a.jpg", "/base/b.jpg"))),
]


@pytest.mark.parametrize(("raw", "want"), CASES)
def test_the_pydantic_row_gives_the_hand_rolled_results(raw: dict, want: object) -> None:
    got = parse_row(raw, 3, Path("/base"))
    if isinstance(want, Product):
        assert got == want
    else:
        assert isinstance(got, RowError) and (got.row, got.field, got.reason, got.product_id) == (
            3, *want)


def test_images_under_the_catalog_root_are_stored_as_catalog_refs(tmp_path: Path) -> None:
    """No absolute path of the ingest machine is stored: any node resolves `catalog:` under its
    own LOOKALIKE_CATALOG_ROOT. Paths outside the root, URLs and given catalog: refs pass."""
    root = tmp_path / "cat"
    (root / "m").mkdir(parents=True)
    row = {"product_id": "p", "images": ["a.jpg", "../../x.jpg", "/abs/y.jpg",
                                         "https://cdn/z.jpg", "catalog:given/w.jpg"]}
    item = parse_row(row, 1, root / "m", catalog_root=root)
    assert isinstance(item, Product)
    assert item.images == ("catalog:m/a.jpg", str(root / "m" / "../../x.jpg"), "/abs/y.jpg",
                           "https://cdn/z.jpg", "catalog:given/w.jpg")
    plain = parse_row(row, 1, root / "m")
    assert isinstance(plain, Product) and plain.images[0] == str(root / "m" / "a.jpg")
    for bad in ("catalog:../x.jpg", "catalog:/etc/passwd", "catalog:"):
        err = parse_row({"product_id": "p", "images": [bad]}, 2, catalog_root=root)
        assert isinstance(err, RowError) and err.field == "images", bad
