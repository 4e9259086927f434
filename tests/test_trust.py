"""Issue #22: liked and disliked examples, result hygiene (score floor,
near-identical results collapsed, variety), near-duplicate groups and
"why is this similar"."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from retrieval.cli.main import main
from retrieval.data.catalogues import load_catalogue
from retrieval.embedding.embedder import create_embedder
from retrieval.search.duplicates import duplicate_groups
from retrieval.search.explain import explain
from retrieval.search.hygiene import Hygiene, tidy
from retrieval.search.query import Query, combine
from retrieval.search.recommender import Recommender, Result
from retrieval.vectors import l2_normalise


def test_liked_and_disliked_examples_move_the_query_the_right_way():
    rng = np.random.default_rng(0)
    a, b = l2_normalise(rng.normal(size=(2, 16)))
    liked = l2_normalise(a + rng.normal(0, 0.08, (3, 16)))
    one, three = combine(liked[:1]), combine(liked)
    assert three @ a > one @ a  # more examples of a look: closer to it
    pushed = combine(liked[:1], b[None])
    assert pushed @ b < one @ b and pushed @ a > 0.5  # away from the disliked one, still near the liked


def colour_shop(root, colours, per=6, size=(40, 48), seed=0):
    rng = np.random.default_rng(seed)
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(per):
            pixels = np.clip(np.array(colour) + rng.normal(0, 45, (*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}{i}.png")
    return root


@pytest.fixture
def shop(tmp_path):
    return colour_shop(tmp_path / "shop", {"red": (220, 30, 30), "orange": (230, 130, 20), "blue": (30, 40, 220),
                                           "green": (30, 200, 40)})


def rec_of(shop, tmp_path, backend="exact") -> Recommender:
    return Recommender(load_catalogue(str(shop)), create_embedder("tiny_test"), tmp_path / "cache",
                       index_backend=backend).build()


def test_examples_never_come_back_and_a_disliked_one_pushes_its_look_away(shop, tmp_path):
    rec = rec_of(shop, tmp_path)
    def oranges(query):  # how many of the top 10 are orange (the look next to red)
        return sum(r.label == "orange" for r in rec.answer(query.checked())[:10])

    plain = rec.answer(Query(items=["red/red0"], k=23, hygiene=Hygiene(dedup=False)).checked())
    disliked = next(r.id for r in plain if r.label == "orange")
    query = Query(items=["red/red0", "red/red1"], unlike_items=[disliked], k=21, hygiene=Hygiene(dedup=False))
    ids = [r.id for r in rec.answer(query.checked())]
    assert not {"red/red0", "red/red1", disliked} & set(ids) and len(ids) == 21
    assert oranges(query) < oranges(Query(items=["red/red0", "red/red1"], k=21, hygiene=Hygiene(dedup=False)))


def results(scores, labels=None):
    return [Result(i + 1, f"i{i}", (labels or [None] * len(scores))[i], s, i) for i, s in enumerate(scores)]


def test_mmr_at_zero_is_the_plain_order_and_at_one_spreads_out():
    vectors = l2_normalise(np.array([[1, 0], [0.99, 0.14], [0.98, 0.2], [0, 1]], dtype=np.float32))
    plain = tidy(results([0.9, 0.89, 0.88, 0.5]), vectors, 3, Hygiene(diversity=0.0, dedup=False), 0.99)
    assert [r.id for r in plain] == ["i0", "i1", "i2"] and [r.rank for r in plain] == [1, 2, 3]
    varied = tidy(results([0.9, 0.89, 0.88, 0.5]), vectors, 3, Hygiene(diversity=0.7, dedup=False), 0.99)
    assert [r.id for r in varied][:2] == ["i0", "i3"]


def test_min_score_and_collapsing_near_identical_results():
    vectors = l2_normalise(np.array([[1, 0], [1, 0.01], [0, 1], [0.6, 0.8]], dtype=np.float32))
    kept = tidy(results([0.9, 0.89, 0.7, 0.4]), vectors, 4, Hygiene(min_score=0.5), 0.999)
    assert [r.id for r in kept] == ["i0", "i2"] and kept[0].near_identical == ["i1"]
    everything = tidy(results([0.9, 0.89, 0.7, 0.4]), vectors, 4, Hygiene(dedup=False), 0.999)
    assert [r.id for r in everything] == ["i0", "i1", "i2", "i3"]


def test_search_flags_act(shop, tmp_path, capsys):
    common = ["--catalogue", str(shop), "--backbone", "tiny_test", "--cache-dir", str(tmp_path / "c")]
    (shop / "red" / "copy.png").write_bytes((shop / "red" / "red0.png").read_bytes())  # byte-identical twin
    capsys.readouterr()

    def search(*extra):
        assert main(["search", *common, "--item", "red/red1", "--k", "8", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    collapsed, shown = search(), search("--no-dedup")
    assert {"red/red0", "red/copy"} <= {r["id"] for r in shown}
    twin = next(r for r in collapsed if r["id"] in ("red/red0", "red/copy"))
    assert twin["near_identical"] and len(collapsed) == 8
    floor = shown[3]["score"]
    assert all(r["score"] >= floor for r in search("--min-score", str(floor), "--no-dedup"))


def test_duplicates_finds_copies_and_no_unrelated_pairs(tmp_path, capsys):
    rng = np.random.default_rng(3)
    (tmp_path / "flat").mkdir()
    for i in range(12):  # unrelated noise pictures
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "flat" / f"n{i}.png")
    source = Image.open(tmp_path / "flat" / "n0.png")
    source.save(tmp_path / "flat" / "n0-again.png")  # the same pixels, another file
    (tmp_path / "flat" / "n5-bytes.png").write_bytes((tmp_path / "flat" / "n5.png").read_bytes())
    rec = Recommender(load_catalogue(str(tmp_path / "flat")), create_embedder("tiny_test"), tmp_path / "c").build()
    groups = [sorted(rec.catalogue.ids[r] for r in g["rows"]) for g in duplicate_groups(rec, 0.9999)]
    assert sorted(groups) == [["n0", "n0-again"], ["n5", "n5-bytes"]]
    out = tmp_path / "groups.csv"
    assert main(["duplicates", "--catalogue", str(tmp_path / "flat"), "--backbone", "tiny_test", "--cache-dir",
                 str(tmp_path / "c"), "--threshold", "0.9999", "--csv", str(out)]) == 0
    assert out.read_text().splitlines()[0] == "group,id,label" and len(out.read_text().splitlines()) == 5


def test_explain_heats_where_a_pasted_patch_matches(tmp_path):
    """Real weights: a striped patch pasted top left in one picture and bottom
    right in the other lights up where it is, in both."""
    rng = np.random.default_rng(0)
    patch = np.zeros((64, 64, 3), dtype=np.uint8)
    patch[(np.arange(64)[:, None] // 8 + np.arange(64)[None, :] // 8) % 2 == 0] = (255, 40, 40)
    a = np.full((192, 256, 3), 110, dtype=np.uint8) + rng.integers(0, 12, (192, 256, 3), dtype=np.uint8)
    b = np.full((192, 256, 3), 110, dtype=np.uint8) + rng.integers(0, 12, (192, 256, 3), dtype=np.uint8)
    a[8:72, 8:72], b[120:184, 184:248] = patch, patch
    embedder = create_embedder("efficientnet_lite0", runtime="torch")
    heat_a, heat_b = explain(embedder, Image.fromarray(a), Image.fromarray(b))
    ya, xa = np.unravel_index(heat_a.argmax(), heat_a.shape)
    yb, xb = np.unravel_index(heat_b.argmax(), heat_b.shape)
    assert ya < heat_a.shape[0] / 2 and xa < heat_a.shape[1] / 2  # top left, where the patch is in a
    assert yb >= heat_b.shape[0] / 2 and xb >= heat_b.shape[1] / 2  # bottom right, where it is in b


def test_explain_writes_a_png(shop, tmp_path, capsys):
    out = tmp_path / "why.png"
    assert main(["explain", "--catalogue", str(shop), "--backbone", "tiny_test", "--cache-dir", str(tmp_path / "c"),
                 "--item", "red/red0", "--with", "red/red1", "--output", str(out)]) == 0
    assert Image.open(out).format == "PNG" and Image.open(out).size[0] > 700


def test_explain_localises_a_side_networks_features_too():
    """efficientnet_lite0_lite2's embedding starts with lite2's features: each
    location's vector must too, or a head trained on the pair can't apply."""
    from retrieval.models.heads import EmbeddingHead
    from retrieval.search.explain import location_vectors

    embedder = create_embedder("tiny_test_pair", runtime="torch")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    assert location_vectors(embedder, image).shape[-1] == embedder.backbone.dim == 96
    embedder.head = lambda features: EmbeddingHead(96, 8, 0).eval()(torch.as_tensor(features)).detach().numpy()
    assert location_vectors(embedder, image).shape[-1] == 8
