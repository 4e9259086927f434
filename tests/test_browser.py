"""The app in a real headless Chromium, driven by Playwright: click a catalogue
item, search with a result, upload a file, switch catalogue, open the Metrics
tab; on a catalogue with metadata (test_page's `store`), filter by a field,
👍 a result, change the hygiene controls and ask Why?. Screenshots are kept
in test-artifacts/ for a human to look at."""

import os
import re
import shutil
from pathlib import Path

import pytest
from test_app import served  # noqa: F401  (the same launched app, a module fixture)
from test_page import BRANDS, store  # noqa: F401  (a service of a manifest catalogue with metadata)

from conftest import launched

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if os.environ.get("CI") and CHROMIUM is None:  # scripts/test.sh installs it: missing there is a failure
    raise RuntimeError("CI: no chromium binary; scripts/test.sh should have installed it")
sync_api = pytest.importorskip("playwright.sync_api")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# as root, offline: no sandbox, and no background calls to Google's hosts
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary")


@pytest.fixture
def page():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            browser.close()


def gallery_label(page, elem_id):
    return page.locator(f"#{elem_id} [data-testid='block-label']")


def thumbnails(page, elem_id):
    return page.locator(f"#{elem_id} button.thumbnail-item")


def test_search_flow_in_chromium(served, page):  # noqa: F811
    expect = sync_api.expect
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(served["url"])
    expect(page.locator("#examples img")).to_have_count(6)

    # a catalogue item as the query: shown in the query box, left out of both
    # galleries (10 other items each); results of its class are marked and counted
    thumbnails(page, "examples").nth(1).click()  # classes sorted: blue, cyan, ...
    expect(page.locator("#query img")).to_have_count(1)
    for side in ("pretrained", "finetuned"):
        expect(page.locator(f"#{side} img")).to_have_count(10)
        expect(gallery_label(page, side)).to_contain_text("/10 share the query's class")
    expect(gallery_label(page, "pretrained")).to_contain_text("Pretrained tiny_test")
    expect(gallery_label(page, "finetuned")).to_contain_text("Fine-tuned tiny_test + shop")
    marked = thumbnails(page, "pretrained").filter(has_text="✓ cyan")
    expect(marked.first).to_be_visible()
    assert marked.count() <= 3  # cyan has 4 items, one of them the query
    # every result is on screen in full (no scrolled, half-hidden last row), captions wrap
    last = thumbnails(page, "pretrained").last
    last.scroll_into_view_if_needed()
    box, gallery = last.bounding_box(), page.locator("#pretrained").bounding_box()
    assert box["y"] + box["height"] <= gallery["y"] + gallery["height"] + 1
    caption = page.locator("#pretrained .caption-label").first
    assert caption.evaluate("e => getComputedStyle(e).whiteSpace") == "pre-line"
    page.screenshot(path=str(ARTIFACTS / "browser-search.png"), full_page=True)

    # a result of another class, selected and searched with, becomes the query
    other = thumbnails(page, "pretrained").filter(has_not_text="✓").first
    other_class = other.inner_text().split("·")[1].strip()
    other.click()
    page.locator("#pretrained-search").click()
    expect(thumbnails(page, "pretrained").filter(has_text=f"✓ {other_class}").first).to_be_visible()

    # an uploaded file: its class is unknown, so nothing is marked
    page.locator("#query button[aria-label='Remove Image']").click()
    page.locator("#query input[type=file]").set_input_files(str(served["shop"] / "red" / "red3.png"))
    expect(gallery_label(page, "pretrained")).not_to_contain_text("share the query's class")
    expect(thumbnails(page, "pretrained").first).to_contain_text("1.000 · red")

    # a catalogue without a fine-tuned head says how to make one
    page.get_by_label("Catalogue").click()
    page.get_by_role("option", name="plain").click()
    expect(page.locator("#finetuned-note")).to_contain_text("python -m finetune --catalogue")
    expect(page.locator("#finetuned img")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "browser-no-head.png"), full_page=True)

    page.get_by_role("tab", name="Metrics").click()
    expect(page.get_by_text("Fine-tuned (best epoch")).to_be_visible()
    expect(page.get_by_role("img").last).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "browser-metrics.png"), full_page=True)


def captions(page, elem_id) -> list:
    return [t.inner_text() for t in thumbnails(page, elem_id).all()]


def scores(page, elem_id) -> list:
    return [float(c.split(" · ")[0]) for c in captions(page, elem_id)]


def set_slider(page, elem_id, value):
    """Type into a slider's number box; leaving it is the slider's `release`."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


@pytest.fixture(scope="module")
def store_url(store):  # noqa: F811
    with launched(store["service"]) as (_, url):
        yield url


def test_store_filters_feedback_hygiene_and_why_in_chromium(store_url, page):
    expect = sync_api.expect
    page.goto(store_url)
    # the catalogue items to click fit their narrow column: no sideways scrolling, names whole
    expect(page.locator("#examples img")).to_have_count(6)
    assert page.locator("#examples .grid-wrap").evaluate("e => e.scrollWidth <= e.clientWidth")
    assert all(page.locator("#examples .caption-label").evaluate_all("els => els.map(e => e.scrollWidth <= "
                                                                     "e.clientWidth && e.offsetWidth > 0)"))
    thumbnails(page, "examples").first.click()  # red0: its copy red0-copy stands for the reds that look alike
    for side in ("pretrained", "finetuned"):
        expect(thumbnails(page, side).filter(has_text="price=")).to_have_count(10)
    expect(thumbnails(page, "pretrained").filter(has_text="brand=").first).to_contain_text("· price=")
    expect(thumbnails(page, "pretrained").filter(has_text="near-identical").first).to_be_visible()
    page.locator("#dedup input").uncheck()  # collapse off: every one of them is a result of its own
    expect(thumbnails(page, "pretrained").filter(has_text="near-identical")).to_have_count(0)
    expect(thumbnails(page, "pretrained")).to_have_count(10)

    # 👍 a result: the results refresh without it, and it shows among the examples in play
    liked = thumbnails(page, "pretrained").filter(has_not_text="red").first
    price = liked.inner_text().split("price=")[1].split()[0]
    liked.click()
    page.locator("#pretrained-like").click()
    expect(page.locator("#in-play img")).to_have_count(1)
    expect(thumbnails(page, "in-play").first).to_contain_text("👍 ")
    for side in ("pretrained", "finetuned"):
        expect(thumbnails(page, side).filter(has_text=re.compile(rf"price={price}\b"))).to_have_count(0)
        expect(thumbnails(page, side)).to_have_count(10)
    page.screenshot(path=str(ARTIFACTS / "browser-store.png"), full_page=True)

    # Why? on a selected result: a picture of both images with heat maps
    thumbnails(page, "finetuned").first.click()
    page.locator("#finetuned-why").click()
    expect(page.locator("#why img")).to_be_visible()

    # a score floor drops the results below it
    top = scores(page, "pretrained")
    floor = int(top[0] * 100) / 100
    assert top[-1] < floor, top
    set_slider(page, "min-score", floor)
    expect(thumbnails(page, "pretrained")).not_to_have_count(10)
    assert 1 <= len(scores(page, "pretrained")) < 10 and min(scores(page, "pretrained")) >= floor
    set_slider(page, "min-score", 0)
    expect(thumbnails(page, "pretrained")).to_have_count(10)

    # a field's control, then the box too: both galleries keep only what matches both
    zed = BRANDS[1]
    page.locator("#filter-choice-1 input").click()  # label, then brand
    page.get_by_role("option", name=zed).click()
    page.keyboard.press("Escape")
    for side in ("pretrained", "finetuned"):
        expect(thumbnails(page, side).filter(has_text=f"brand={zed}")).to_have_count(10)
    page.locator("#where textarea").fill("price >= 20")
    page.locator("#where textarea").press("Enter")
    expected = len({21, 22, 24, 27, 29, 30, 32} - {int(price)})  # zed's prices from 20
    for side in ("pretrained", "finetuned"):
        expect(thumbnails(page, side)).to_have_count(expected)
        assert all(f"brand={zed}" in c and int(c.split("price=")[1].split()[0]) >= 20 for c in captions(page, side))
    page.locator("#where textarea").fill("price >> 3")
    page.locator("#where textarea").press("Enter")
    expect(page.locator(".toast-body").first).to_contain_text("price")

    page.locator("#start-over").click()
    expect(page.locator("#in-play")).to_be_hidden()
