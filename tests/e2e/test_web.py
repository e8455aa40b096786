"""The search page in a real browser: headless Chromium (playwright) against the running app.

One browser for the module, a fresh context (cookies, cache, viewport) per test. Screenshots go
to artifacts/ at the repository root for people to look at; the tests never compare pixels.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from lookalike.catalog.product import Product
from tests.prerequisites import require

# Debian's chromium (`make browser` installs it); playwright never downloads a browser.
CHROMIUM = Path(os.environ.get("LOOKALIKE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 30_000  # the first query also warms the embedders

pytestmark = [pytest.mark.slow, pytest.mark.browser]

require(CHROMIUM.exists(), f"{CHROMIUM} is missing",
        "run `make browser` as root, or `sudo apt-get install chromium fonts-dejavu-core`")
require(importlib.util.find_spec("playwright") is not None, "playwright is not installed",
        "`make setup` installs it: pip install -c constraints.txt -e '.[test]'")
from playwright import sync_api

expect = sync_api.expect
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, app_url: str, **context_args):
    context = browser.new_context(locale="en-US", **context_args)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.js_errors = []  # uncaught exceptions in the page's own scripts
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    page.goto(app_url + "/")
    # The facets come from GET /v1/facets: the page is ready once the colour filter is built.
    expect(page.locator('.facet-options[data-facet="color"] input').first).to_be_attached()
    return page


@pytest.fixture
def page(browser, app_url: str):
    page = open_page(browser, app_url, viewport={"width": 1280, "height": 900})
    yield page
    errors = list(page.js_errors)
    page.context.close()
    assert not errors, f"uncaught script errors: {errors}"


@pytest.fixture
def products(catalogue: tuple[Path, list[Product]]) -> list[Product]:
    return catalogue[1]


def search(page) -> None:
    """Press Search and wait for the search to finish (results, empty state or error)."""
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#results")).to_have_attribute("aria-busy", "false")


def result_cards(page):
    return page.locator("#results > li.card:not(.skeleton)")


def images_loaded(locator) -> bool:
    return locator.evaluate_all("imgs => imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0)")


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.mouse.move(0, 0)  # no hover styles in the picture
    page.screenshot(path=str(path), full_page=full_page)
    return path


def test_image_upload_finds_that_product_first(page, products: list[Product]) -> None:
    target = products[3]
    page.get_by_label("Choose a photo to search with").set_input_files(target.images[0])
    expect(page.locator("#preview-img")).to_be_visible()

    search(page)

    cards = result_cards(page)
    expect(cards.first).to_be_visible()
    assert cards.count() == 12  # the default "Show up to 12 results"
    first = cards.first
    assert first.get_attribute("data-product-id") == target.product_id
    expect(first.get_by_role("button", name=target.title)).to_be_visible()
    expect(first.locator(".card-color")).to_have_text(target.color, ignore_case=True)
    expect(first.locator(".card-price")).to_contain_text(f"{target.price:.2f}")
    assert float(first.locator(".score-value").inner_text()) > 0.99  # the same photo
    expect(page.locator("#status")).to_contain_text("12 products found by photo")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")
    assert first.locator("img").get_attribute("alt") == target.title
    expect(page.get_by_role("alert")).to_be_hidden()
    screenshot(page, "search-results.png")


def test_text_query_with_colour_filter_shows_only_that_colour(page, products: list[Product]) -> None:
    colour, n_colour = Counter(p.color for p in products).most_common(1)[0]
    box = page.get_by_role("group", name="Colour").get_by_role(
        "checkbox", name=re.compile(rf"^{re.escape(colour)}\b", re.IGNORECASE))
    box.check()
    expect(page.locator("#filter-count")).to_have_text("1 active")
    page.get_by_label("Description", exact=True).fill("comfortable everyday clothes")

    search(page)

    cards = result_cards(page)
    expect(cards.first).to_be_visible()
    shown = cards.count()
    assert 1 <= shown <= min(n_colour, 12)
    assert set(cards.evaluate_all("cs => cs.map(c => c.dataset.color)")) == {colour}
    assert {t.strip().lower() for t in cards.locator(".card-color").all_inner_texts()} == {colour}

    # Changing a filter after a search re-runs it: a second colour widens the results.
    other = next(c for c, _ in Counter(p.color for p in products).most_common() if c != colour)
    page.get_by_role("group", name="Colour").get_by_role(
        "checkbox", name=re.compile(rf"^{re.escape(other)}\b", re.IGNORECASE)).check()
    expect(page.locator(f"#results .card[data-color='{other}']").first).to_be_visible()
    assert set(cards.evaluate_all("cs => cs.map(c => c.dataset.color)")) <= {colour, other}


def test_invalid_file_shows_the_api_error_and_the_page_keeps_working(page, products: list[Product]) -> None:
    page.get_by_label("Choose a photo to search with").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"these are not pixels"})

    search(page)

    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("not an image")  # the API's own message
    expect(result_cards(page)).to_have_count(0)
    expect(page.get_by_role("button", name="Search", exact=True)).to_be_enabled()

    # Recover: drop the bad file, search by text.
    page.get_by_role("button", name="Remove photo").click()
    page.get_by_label("Description", exact=True).fill("bag")
    search(page)
    expect(alert).to_be_hidden()
    expect(result_cards(page).first).to_be_visible()

    # And a good photo works again through the same file input.
    page.get_by_label("Description", exact=True).fill("")
    page.get_by_label("Choose a photo to search with").set_input_files(products[0].images[0])
    search(page)
    expect(alert).to_be_hidden()
    assert result_cards(page).first.get_attribute("data-product-id") == products[0].product_id


def test_clicking_a_result_opens_the_product_with_images_and_more_like_this(
        page, products: list[Product]) -> None:
    target = next(p for p in products if len(p.images) > 1)
    page.get_by_label("Choose a photo to search with").set_input_files(target.images[0])
    search(page)
    opener = result_cards(page).first.get_by_role("button", name=target.title)
    opener.click()

    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading", level=2)).to_have_text(target.title)
    assert dialog.evaluate("d => d.contains(document.activeElement)")  # focus moved into it
    expect(dialog.locator(".facts")).to_contain_text(target.product_id)

    photos = dialog.get_by_role("group", name="Product photos").get_by_role("button")
    expect(photos).to_have_count(len(target.images))
    page.wait_for_function(
        "() => [...document.querySelectorAll('#product-dialog .product-image')]"
        ".every(i => i.complete && i.naturalWidth > 0)")
    photos.nth(1).click()
    expect(photos.nth(1)).to_have_attribute("aria-pressed", "true")
    expect(dialog.locator(".gallery-main")).to_have_attribute(
        "src", f"/v1/products/{target.product_id}/images/1")

    similar = dialog.locator("#similar-list > li.card")
    expect(similar.first).to_be_visible()
    ids = similar.evaluate_all("cs => cs.map(c => c.dataset.productId)")
    assert ids and target.product_id not in ids
    page.wait_for_function(
        "() => [...document.querySelectorAll('#similar-list img')].every(i => i.complete && i.naturalWidth > 0)")
    screenshot(page, "product-dialog.png", full_page=False)

    # "More like this" opens that product in the same dialog.
    similar.first.get_by_role("button").click()
    expect(dialog.locator(".facts")).to_contain_text(ids[0])

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert opener.evaluate("b => b === document.activeElement")  # focus returns to the result


def test_phone_width_layout(browser, app_url: str) -> None:
    page = open_page(browser, app_url, viewport={"width": 390, "height": 844}, device_scale_factor=2,
                     is_mobile=True, has_touch=True)
    try:
        page.get_by_label("Description", exact=True).fill("sneaker")
        search(page)
        cards = result_cards(page)
        expect(cards.first).to_be_visible()
        # Two columns, nothing wider than the screen.
        lefts = {round(b["x"]) for b in cards.evaluate_all(
            "cs => cs.map(c => c.getBoundingClientRect().toJSON())")}
        assert len(lefts) == 2
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        # Filters fold away behind a labelled toggle.
        toggle = page.get_by_role("button", name="Show filters")
        expect(toggle).to_have_attribute("aria-expanded", "false")
        expect(page.get_by_role("group", name="Colour")).to_be_hidden()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")
        screenshot(page, "search-results-phone.png")
        toggle.click()
        expect(page.get_by_role("group", name="Colour")).to_be_visible()
        assert not page.js_errors
    finally:
        page.context.close()


def test_controls_are_labelled(page) -> None:
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, button')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                     && !(e.textContent || '').trim())
        .map(e => e.id || e.outerHTML.slice(0, 80))""")
    assert unlabelled == []
    assert page.locator("#status").get_attribute("aria-live") == "polite"
    expect(page.get_by_role("heading", name="Results")).to_be_visible()


# -- query understanding on the page: chips, why, "not like this", the URL ---------------------

def text_search(page, text: str) -> None:
    page.get_by_label("Description", exact=True).fill(text)
    search(page)
    expect(result_cards(page).first).to_be_visible()


def test_inferred_filters_show_as_chips_that_can_be_removed(page, products: list[Product]) -> None:
    category = Counter(p.category for p in products).most_common(1)[0][0]
    text_search(page, f"crimson {category}")
    chips = page.locator("#inferred-chips .inferred-chip")
    expect(chips).to_have_count(2)
    expect(page.locator("#inferred-chips")).to_contain_text("Colour: Red")
    expect(page.locator("#inferred-chips")).to_contain_text(f"Category: {category}", ignore_case=True)
    page.get_by_role("button", name=re.compile(r"^Remove colour red$", re.IGNORECASE)).click()
    expect(chips).to_have_count(1)
    expect(page.locator("#inferred-chips")).not_to_contain_text("Colour")
    # The removal travels with the search: the URL keeps it.
    assert "drop_inferred=color" in page.url


def test_why_explains_a_result(page, products: list[Product]) -> None:
    text_search(page, "navy trainers")
    first = result_cards(page).first
    first.locator(".why summary").click()
    lines = first.locator(".why-list li")
    expect(lines.first).to_be_visible()
    text = " ".join(lines.all_inner_texts())
    # A text search with words: the store fuses the text and keyword ranks (docs/api.md).
    assert "Description and keyword match" in text and "(ranks fused)" in text, text
    if first.get_attribute("data-color") == "blue":
        assert "navy" in text  # the boost says which words it came from
    expect(page.locator("#product-dialog")).not_to_be_visible()  # "why" does not open the product


def test_not_like_this_hides_a_product_from_the_next_searches(page) -> None:
    text_search(page, "dress")
    first = result_cards(page).first
    pid = first.get_attribute("data-product-id")
    first.get_by_role("button", name=re.compile("^Not like this")).click()
    expect(page.locator(f'#results li[data-product-id="{pid}"]')).to_have_count(0)
    expect(page.locator("#not-like-note")).to_be_visible()
    stored = page.evaluate("() => JSON.parse(localStorage.getItem('lookalike.notLike'))")
    assert stored == [pid]
    page.reload()  # the next visit, the same shopper
    expect(page.locator('.facet-options[data-facet="color"] input').first).to_be_attached()
    expect(result_cards(page).first).to_be_visible()  # the URL re-ran the search
    assert pid not in result_cards(page).evaluate_all("cs => cs.map(c => c.dataset.productId)")
    page.get_by_role("button", name="Show them again").click()
    expect(page.locator(f'#results li[data-product-id="{pid}"]')).to_have_count(1)


def test_the_search_is_in_the_url_and_a_reload_restores_it(page, products: list[Product]) -> None:
    colour = Counter(p.color for p in products).most_common(1)[0][0]
    page.get_by_role("group", name="Colour").get_by_role(
        "checkbox", name=re.compile(rf"^{re.escape(colour)}\b", re.IGNORECASE)).check()
    text_search(page, "comfortable shoes")
    assert "q=comfortable+shoes" in page.url and f"color={colour}" in page.url.replace("%20", "+")
    shown = result_cards(page).evaluate_all("cs => cs.map(c => c.dataset.productId)")
    shared = page.url
    other = open_page(page.context.browser, shared.split("/?")[0], viewport={"width": 1280, "height": 900})
    try:
        other.goto(shared)
        expect(result_cards(other).first).to_be_visible()
        expect(other.get_by_label("Description", exact=True)).to_have_value("comfortable shoes")
        assert other.get_by_role("group", name="Colour").get_by_role(
            "checkbox", name=re.compile(rf"^{re.escape(colour)}\b", re.IGNORECASE)).is_checked()
        assert result_cards(other).evaluate_all("cs => cs.map(c => c.dataset.productId)") == shown
    finally:
        other.context.close()


SENT_FORMS = """() => {
  window.__sentForms = [];
  const original = window.fetch;
  window.fetch = (url, options) => {
    if (options && options.body instanceof FormData) {
      window.__sentForms.push(Object.fromEntries(
        [...options.body.entries()].filter(([, v]) => typeof v === "string")));
    }
    return original(url, options);
  };
}"""


def test_a_crop_drawn_on_the_photo_is_what_the_api_embeds(page, products: list[Product]) -> None:
    target = products[5]
    page.evaluate(SENT_FORMS)  # what the page sends (playwright hides multipart bodies with files)
    page.get_by_label("Choose a photo to search with").set_input_files(target.images[0])
    img = page.locator("#preview-img")
    expect(img).to_be_visible()
    page.wait_for_function("() => document.querySelector('#preview-img').naturalWidth > 0")
    box = img.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.25)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.75, steps=5)
    page.mouse.up()
    expect(page.locator("#crop-box")).to_be_visible()
    search(page)
    expect(result_cards(page).first).to_be_visible()
    sent = page.evaluate("() => window.__sentForms")
    assert sent and "crop" in sent[-1], sent
    x, y, w, h = (float(v) for v in sent[-1]["crop"].split(","))
    assert (x, y, w, h) == pytest.approx((0.5, 0.25, 0.4, 0.5), abs=0.03)
    # The whole photo again: no crop is sent.
    page.get_by_role("button", name="Use the whole photo").click()
    expect(page.locator("#crop-box")).to_be_hidden()
    search(page)
    assert "crop" not in page.evaluate("() => window.__sentForms")[-1]


def test_a_result_with_variants_offers_them_and_switches_the_card(page, client, admin,
                                                                   products: list[Product]) -> None:
    import json

    image = Path(products[7].images[0]).read_bytes()
    meta = {"title": "Swatch test raincoat", "category": "coat", "price": 120.0,
            "group_id": "e2e-raincoat"}
    made = {"raincoat-green": ("green", "M"), "raincoat-purple": ("purple", "XL")}
    try:
        for pid, (color, size) in made.items():
            resp = client.put(f"/v1/products/{pid}", headers=admin,
                              data={"metadata": json.dumps({**meta, "color": color, "size": size})},
                              files=[("image", ("a.jpg", image, "image/jpeg"))])
            assert resp.status_code == 200, resp.text
        page.get_by_label("Choose a photo to search with").set_input_files(products[7].images[0])
        search(page)
        cards = result_cards(page).filter(has=page.locator(".variant-swatch"))
        card = cards.filter(has_text="Swatch test raincoat").first
        expect(card.locator(".variants-label")).to_have_text("also in 1 variant")
        assert result_cards(page).filter(has_text="Swatch test raincoat").count() == 1
        first = card.get_attribute("data-product-id")
        other = next(p for p in made if p != first)
        swatch = card.get_by_role("button", name=f"Show {made[other][0].capitalize()}, {made[other][1]}")
        expect(swatch).to_have_attribute("aria-pressed", "false")
        swatch.click()
        expect(card).to_have_attribute("data-product-id", other)
        expect(card.locator(".card-color")).to_have_text(made[other][0], ignore_case=True)
        expect(swatch).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#product-dialog")).to_be_hidden()  # a swatch switches, never opens
        screenshot(page, "search-variants.png", full_page=False)
    finally:
        for pid in made:
            client.delete(f"/v1/products/{pid}", headers=admin)
