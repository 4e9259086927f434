"""The app in a real headless Chromium, driven by Playwright: click a catalogue
item, click a result, upload a file, switch catalogue, open the Metrics tab.
Screenshots are kept in test-artifacts/ for a human to look at."""

import os
import shutil
from pathlib import Path

import pytest
from test_app import served  # noqa: F401  (the same launched app, a module fixture)

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
    assert page.locator("#pretrained .caption-label").first.evaluate("e => getComputedStyle(e).whiteSpace") == "normal"
    page.screenshot(path=str(ARTIFACTS / "browser-search.png"), full_page=True)

    # clicking a result of another class searches with it
    other = thumbnails(page, "pretrained").filter(has_not_text="✓").first
    other_class = other.inner_text().split("·")[1].strip()
    other.click()
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
