"""lookalike.client end to end: the typed client against the real app (real Ray Serve, real
milvus-lite, the packaged models, real HTTP), on the e2e tier's shared app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from lookalike.catalog.product import Product as Stored
from lookalike.client import AsyncClient, Client, LookalikeError, Product

TIMEOUT_S = 60.0  # as the tier's own httpx client: the first searches load the models


@pytest.fixture(scope="module")
def products(catalogue: tuple[Path, list[Stored]]) -> list[Stored]:
    return catalogue[1]


@pytest.fixture
def lookalike(app_url: str, admin: dict[str, str]) -> Iterator[Client]:
    key = admin["Authorization"].removeprefix("Bearer ")
    with Client(app_url, admin_key=key, timeout=TIMEOUT_S) as client:
        yield client


def test_text_search(lookalike: Client) -> None:
    got = lookalike.search("red dress", top_k=5)
    assert 0 < len(got) <= 5
    assert got.results[0].color == "red" or got.results[0].category == "dress"
    assert got.took_ms > 0 and got.inferred is not None
    scores = [h.score for h in got]
    assert scores == sorted(scores, reverse=True)


def test_photo_search_from_a_catalogue_path_finds_the_product_first(
        lookalike: Client, products: list[Stored]) -> None:
    p = products[7]
    assert lookalike.search(image=p.images[0], top_k=5).product_ids[0] == p.product_id
    with Image.open(p.images[0]) as photo:  # a PIL image works the same
        assert lookalike.search(image=photo, top_k=5).product_ids[0] == p.product_id


def test_filters_hold_for_every_result(lookalike: Client, products: list[Stored]) -> None:
    got = lookalike.search("something to wear", top_k=50,
                           filters={"color": ["red", "blue"], "min_price": 10, "max_price": 80})
    assert got.results
    assert all(h.color in ("red", "blue") and 10 <= h.price <= 80 for h in got), got.results
    p = products[3]
    photo = lookalike.search(image=p.images[0], top_k=20, filters={"category": p.category})
    assert photo.results
    assert all(h.category == p.category for h in photo)


def test_similar_excludes_the_product_and_honours_filters(lookalike: Client,
                                                          products: list[Stored]) -> None:
    p = products[9]
    got = lookalike.similar(p.product_id, top_k=8)
    assert len(got) == 8 and p.product_id not in got.product_ids
    same = lookalike.similar(p.product_id, top_k=8, filters={"category": [p.category]})
    assert same.results
    assert all(h.category == p.category for h in same)


def test_facets_and_info(lookalike: Client, products: list[Stored]) -> None:
    facets = lookalike.facets()
    assert facets.category and all(n > 0 for n in facets.category.values())
    assert {p.category for p in products} <= set(facets.category)
    assert facets.price.min is not None and facets.price.min <= facets.price.max
    info = lookalike.info()
    assert info.products >= len(products) - 2  # the write tests may have deleted a few
    assert info.collection == "e2e_products" and info.model.version


def test_get_a_product(lookalike: Client, products: list[Stored]) -> None:
    p = next(p for p in products if len(p.images) > 1)
    got = lookalike.get(p.product_id)
    assert (got.product_id, got.title, got.category) == (p.product_id, p.title, p.category)
    assert got.price == pytest.approx(p.price) and len(got.image_urls) == len(p.images)
    with pytest.raises(LookalikeError) as caught:
        lookalike.get("no-such-product")
    assert (caught.value.status, caught.value.code) == (404, "not_found")


def pattern() -> Image.Image:
    """A photo no catalogue product resembles (the catalogue is Fashion-MNIST garments)."""
    image = Image.new("RGB", (128, 128), (250, 240, 20))
    draw = ImageDraw.Draw(image)
    for x in range(0, 128, 16):
        draw.rectangle((x, 0, x + 7, 127), fill=(20, 20, 160))
    return image


def test_put_get_search_delete(lookalike: Client, app_url: str, tmp_path: Path) -> None:
    photo = pattern()
    photo.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "back.jpg")
    made = lookalike.put(Product("client-cape", title="Chequered alpine wool cape",
                                 category="coat", color="yellow", size="M", price=88.0,
                                 attributes={"season": "winter"}),
                         [photo, tmp_path / "back.jpg"])  # a PIL image and a path
    try:
        assert made.product_id == "client-cape" and made.attributes == {"season": "winter"}
        got = lookalike.get("client-cape")
        assert got.title == "Chequered alpine wool cape" and len(got.image_urls) == 2
        assert "client-cape" in lookalike.search("chequered alpine wool cape", top_k=3).product_ids
        assert lookalike.search(image=photo, top_k=3).product_ids[0] == "client-cape"
        # A write without the admin key is refused, and changes nothing.
        with Client(app_url, timeout=TIMEOUT_S) as anonymous, \
                pytest.raises(LookalikeError) as caught:
            anonymous.delete("client-cape")
        assert (caught.value.status, caught.value.code) == (401, "unauthorized")
        assert lookalike.get("client-cape").title == got.title
    finally:
        lookalike.delete("client-cape")
    with pytest.raises(LookalikeError) as caught:
        lookalike.get("client-cape")
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    with pytest.raises(LookalikeError) as caught:
        lookalike.delete("client-cape")
    assert caught.value.code == "not_found"


def test_recommend(lookalike: Client, products: list[Stored]) -> None:
    liked, disliked = products[4], products[5]
    got = lookalike.recommend([liked.product_id], negative=disliked.product_id, top_k=5)
    assert got.results
    assert not {liked.product_id, disliked.product_id} & set(got.product_ids)


def test_async_client_answers_as_the_sync_one(app_url: str, lookalike: Client,
                                              products: list[Stored]) -> None:
    p = products[12]

    async def run() -> tuple[list[str], str, int]:
        async with AsyncClient(app_url, timeout=TIMEOUT_S) as client:
            found = await client.search(image=Path(p.images[0]), top_k=5)
            got = await client.get(p.product_id)
            info = await client.info()
            return found.product_ids, got.title, info.products

    ids, title, count = asyncio.run(run())
    assert ids == lookalike.search(image=Path(p.images[0]), top_k=5).product_ids
    assert ids[0] == p.product_id and title == p.title and count > 0
