"""The page's pieces without a browser: the filters' `where` string (quoting,
combining, slots per catalogue), feedback's state, captions with metadata,
the Duplicates view, and the Search tab's functions against a real Service
serving `store`, a manifest catalogue with metadata (test_browser.py drives
the same app in Chromium)."""

import csv
from pathlib import Path

import gradio as gr
import pyarrow as pa
import pytest
from test_app import COLOURS, served  # noqa: F401  (the shop, its cache and its trained head)

from retrieval.errors import LookalikeError
from retrieval.models.backbones import create_backbone
from retrieval.search.answers import Match
from retrieval.search.query import MAX_EXAMPLES
from retrieval.search.service import Service
from retrieval.search.spaces import CatalogueConfig
from retrieval.search.where import parse_where
from ui import duplicates_tab, feedback, filters, search_tab
from ui.format import caption

BRANDS = ["Acme", 'Zed "Z" \\ Co']  # a quote and a backslash: the filter must quote them


def make_store(root: Path, shop: Path) -> Path:
    """store.csv: the shop's 24 images as products (image, id, label, brand, price: unique), and
    `red0-copy`, the same image as red0 under another id (an identical pair)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [{"image": str(shop / colour / f"{colour}{i}.png"), "id": f"{colour}{i}", "label": colour,
             "brand": BRANDS[(n + i) % 2], "price": 10 + 4 * n + i}
            for n, colour in enumerate(COLOURS) for i in range(4)]
    rows.append({"image": str(shop / "red" / "red0.png"), "id": "red0-copy", "label": "red", "brand": "Acme",
                 "price": 99})
    with open(root / "store.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "store.csv"


@pytest.fixture(scope="module")
def store(served, tmp_path_factory):  # noqa: F811
    """A service of `store` (with the shop's fine-tuned head: the same backbone's features)."""
    tmp = tmp_path_factory.mktemp("store")
    manifest = make_store(tmp / "store", served["shop"])
    service = Service([CatalogueConfig("store", str(manifest), "tiny_test", head=str(served["run_dir"]))],
                      cache_dir=tmp_path_factory.getbasetemp() / "cache",
                      backbones={"tiny_test": create_backbone("tiny_test")})
    service.build_all()
    return {"service": service}


def test_filters_quote_values_and_names_so_the_where_language_reads_them_back():
    """A value with quotes and backslashes, a field named like a keyword or with a space: each
    comes back from the filter language as typed (never a broken or widened filter)."""
    types = {"brand": "string", "in": "string", "body style": "string", "price": "integer", "used": "boolean"}
    slots = filters.Plan(choices=[("brand", "string", BRANDS), ("in", "string", ["x"]),
                                  ("body style", "string", ["SUV"]), ("used", "boolean", [True, False])],
                         ranges=[("price", "integer", [1, 99])])
    where = filters.where_string("brand == 'a' or price > 3", slots, [[BRANDS[1]], ["x"], [], ["true"]],
                                 [("10", " 20.5 ")])
    assert where == ("(brand == 'a' or price > 3) and brand in [\"Zed \\\"Z\\\" \\\\ Co\"] and `in` in [\"x\"] "
                     "and (used == true) and price >= 10 and price <= 20.5")
    parsed = parse_where(where, types)
    assert parsed.fields == {"brand", "in", "price", "used"}
    table = {"brand": [BRANDS[1], "a"], "in": ["x", "x"], "body style": ["SUV", "SUV"], "price": [10, 1],
             "used": [True, True]}
    assert parse_where(where, types).mask(pa.table(table)).tolist() == [True, False]
    assert filters.where_string("  ", slots, [[], [], [], []], [(None, "")]) is None
    assert filters.field_ref("body style") == "`body style`" and filters.field_ref("AND") == "`AND`"
    with pytest.raises(LookalikeError, match="price from: 'ten' is not a number"):
        filters.where_string(None, slots, [], [("ten", None)])
    with pytest.raises(LookalikeError, match="finite"):
        filters.literal(float("inf"))


def test_filter_slots_follow_the_catalogues_fields(store):
    service = store["service"]
    slots = filters.plan(service.fields("store"))
    assert [c[0] for c in slots.choices] == ["label", "brand"]  # ids are no facet
    assert slots.ranges == [("price", "integer", [10, 99])]
    hint, *updates = filters.relabel(service, "store")
    assert "brand (string)" in hint and "price (integer)" in hint and "query.label" in hint
    shown = [u for u in updates if u.visible]
    assert [u.label for u in shown] == ["label", "brand", "price from", "price to"]
    assert shown[3].placeholder == "99" and len(updates) == filters.MAX_CHOICES + 2 * filters.MAX_RANGES


def test_feedback_keeps_each_example_once_per_catalogue_and_within_the_limit():
    liked = feedback.marked(None, "store", "liked", "red1", 1)
    liked = feedback.marked(liked, "store", "disliked", "blue0", 8)
    liked = feedback.marked(liked, "store", "liked", "blue0", 8)  # changed its mind: liked, not disliked
    assert feedback.in_play(liked, "store") == (["red1", "blue0"], [])
    assert feedback.in_play(liked, "shop") == ([], [])  # another catalogue's ids mean nothing there
    assert feedback.removed(liked, 0)["liked"] == [["blue0", 8]]
    many = feedback.empty("store")
    for i in range(MAX_EXAMPLES - 1):  # with the query itself, as many examples as a query takes
        many = feedback.marked(many, "store", "disliked", f"x{i}", i)
    with pytest.raises(LookalikeError, match="remove one first"):
        feedback.marked(many, "store", "liked", "y", 0)
    with pytest.raises(LookalikeError, match="select a result first"):
        feedback.selected_row({"pretrained": [3]}, {"pretrained": None}, "pretrained")


def test_captions_show_metadata_and_what_was_collapsed(tmp_path):
    match = Match(1, "a1", "Audi", 0.9123, 0, tmp_path, True, {"body": "Coupe", "year": 2012, "price": 2.5e4},
                  ["a2", "a3"])
    assert caption(match) == "0.912 · ✓ Audi\nbody=Coupe · year=2012 · price=25000\n+2 near-identical"
    plain = Match(1, "a1", None, 0.5, 0, tmp_path, None)
    assert caption(plain) == "0.500 · a1"


def search_args(service, item=None, liked=None, where="", brands=(), low="", hygiene=(0, 0, True), k=10):
    """search_function's arguments for `store` (SearchTab.inputs' order)."""
    choices = [[], list(brands)] + [[]] * (filters.MAX_CHOICES - 2)
    ranges = [low, ""] + [""] * (2 * filters.MAX_RANGES - 2)
    row = None if item is None else ("store", service.get("store").catalogue.row(item))
    return [None, "store", "tiny_test", k, row, liked or feedback.empty("store"), *hygiene, where, *choices, *ranges]


def colours(ids) -> int:
    """How many colours (the generated items' classes) among these ids."""
    return len({i.rstrip("0123456789").removesuffix("-copy").rstrip("0123456789") for i in ids})


def test_search_applies_feedback_filters_and_hygiene(store):
    service = store["service"]
    search = search_tab.search_function(service)
    ids = dict.fromkeys(("pretrained", "finetuned"))

    def run(**kwargs):
        *galleries, _, shown, selected, why = search(*search_args(service, **kwargs))
        assert selected == {} and why.visible is False  # a new answer: nothing selected, no Why? of the last
        for side in ids:
            ids[side] = [service.item_id("store", r) for r in shown[side]]
        return galleries

    run(item="red0")
    liked_id = next(i for i in ids["pretrained"] if not i.startswith("red"))
    disliked_id = ids["finetuned"][0]
    liked = feedback.marked(feedback.marked(None, "store", "liked", liked_id, 0), "store", "disliked", disliked_id, 0)
    run(item="red0", liked=liked)
    for side in ids:
        assert not {liked_id, disliked_id, "red0"} & set(ids[side]) and len(ids[side]) == 10
    galleries = run(item="red0", brands=[BRANDS[1]], where="price < 30", low="12")
    cat = service.get("store").catalogue
    for side in ids:
        assert ids[side] and all(cat.metadata(cat.row(i))["brand"] == BRANDS[1] and
                                 12 <= cat.metadata(cat.row(i))["price"] < 30 for i in ids[side])
    assert all(f"brand={BRANDS[1]}" in g["caption"] for g in galleries[0].value)
    for gallery in run(item="red0", hygiene=(0.99, 0, True)):  # a score floor
        scores = [float(g["caption"].split(" · ")[0]) for g in gallery.value]
        assert scores and len(scores) < 10 and min(scores) >= 0.99
    run(item="red0")
    by_score = dict(ids)
    run(item="red0", hygiene=(0, 0.9, True))  # variety: other colours than the query's come earlier
    assert ids["pretrained"] != by_score["pretrained"]
    assert colours(ids["pretrained"][:4]) > colours(by_score["pretrained"][:4])
    assert ids["pretrained"].index("red0-copy") == 0 and not all(i.startswith("red") for i in ids["pretrained"][:4])
    run(item="red0", hygiene=(0, 0, False))  # the copy no longer stands for the reds identical to it
    assert len(set(ids["pretrained"][:4]) & {"red0-copy", "red1", "red2", "red3"}) == 4
    with pytest.raises(gr.Error, match="price"):
        search(*search_args(service, item="red0", where="price >> 3"))
    assert search(*search_args(service))[3] == {}  # no query yet: empty galleries


def test_duplicates_view_groups_the_copy_with_its_original(store):
    service = store["service"]
    gallery, note = duplicates_tab.groups_view(service, "store")
    groups = service.duplicates("store")
    assert any({e.row for e in g} >= {service.get("store").catalogue.row(i) for i in ("red0", "red0-copy")}
               for g in groups)
    assert gallery.value[0]["caption"].startswith(f"group 1 of {len(groups)} · ")
    assert f"**{len(groups)} groups**" in note and "cosine ≥ 0.9999" in note and "only identical" in note
