"""Issue #21: catalogues as shops keep them (flat folders, manifests with
typed metadata), item queries, `--where` filters that fill k on every index
backend, metadata in results, every item's lookalikes at once."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from retrieval.cli.main import main
from retrieval.data.catalogues import load_catalogue
from retrieval.data.stanford_cars import parse_class_name
from retrieval.embedding.embedder import create_embedder
from retrieval.errors import LookalikeError
from retrieval.search.recommender import Recommender
from retrieval.search.where import parse_where
from retrieval.vectors import top_k

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def shop_images(folder, n=30, seed=0) -> list:
    """n generated product photos (a colour each, with noise) in `folder`."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        colour = list(COLOURS.values())[i % 3]
        pixels = np.clip(np.array(colour) + rng.normal(0, 40, (40, 48, 3)), 0, 255).astype(np.uint8)
        paths.append(folder / f"p{i:03d}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def write_manifest(path, paths, extra=None):
    """A CSV manifest: relative image paths, ids, a class and typed metadata."""
    lines = ["image,id,label,brand,price,in_stock,colour_name"]
    for i, p in enumerate(paths):
        brand = ["Acme", "Bolt", "Cirrus", "Dyno"][i % 4]
        price = "" if i % 7 == 3 else f"{10 + i * 2.5}"
        lines.append(f"{p.relative_to(path.parent)},sku-{i},{list(COLOURS)[i % 3]},{brand},{price},"
                     f"{'yes' if i % 2 else 'no'},\"shade \"\"{i}\"\"\"")
    path.write_text("\n".join(lines + (extra or [])) + "\n")
    return path


@pytest.fixture
def manifest(tmp_path):
    return write_manifest(tmp_path / "shop.csv", shop_images(tmp_path / "photos"))


def test_manifest_columns_are_typed_and_carried(manifest):
    cat = load_catalogue(str(manifest))
    assert cat.metadata_fields == {"id": "string", "label": "string", "brand": "string", "price": "float",
                                   "in_stock": "boolean", "colour_name": "string"}
    assert cat.ids[:2] == ["sku-0", "sku-1"] and cat.label_names == ["blue", "green", "red"]
    assert cat.metadata(1) == {"brand": "Bolt", "price": 12.5, "in_stock": True, "colour_name": 'shade "1"'}
    assert "price" not in cat.metadata(3)  # empty: missing, not 0


def test_manifest_problems_are_one_line(tmp_path, manifest):
    (tmp_path / "noimage.csv").write_text("id,brand\n1,a\n")
    with pytest.raises(LookalikeError, match="needs an `image` column"):
        load_catalogue(str(tmp_path / "noimage.csv"))
    lines = manifest.read_text().splitlines()
    (tmp_path / "dupes.csv").write_text("\n".join(lines[:3] + [lines[2]]) + "\n")
    with pytest.raises(LookalikeError, match="ids must be unique; repeated: sku-1"):
        load_catalogue(str(tmp_path / "dupes.csv"))
    with pytest.raises(LookalikeError, match="no column 'kind' for --label-column"):
        load_catalogue(str(manifest), label_column="kind")


def test_unreadable_rows_and_urls_offline_are_skipped_and_counted(tmp_path, manifest, caplog, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_manifest(manifest, sorted((tmp_path / "photos").glob("*.png")),
                   ["missing.png,sku-x,red,Acme,1,no,a", "https://example.com/a.jpg,sku-y,red,Acme,1,no,b"])
    cat = load_catalogue(str(manifest))
    assert len(cat) == 30 and "missing" in caplog.text and "offline: not fetched" in caplog.text


def test_jsonl_and_parquet_manifests_with_bytes(tmp_path):
    paths = shop_images(tmp_path / "photos", n=6)
    rows = [{"image": str(p), "id": f"j{i}", "size": i} for i, p in enumerate(paths)]
    (tmp_path / "shop.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cat = load_catalogue(str(tmp_path / "shop.jsonl"))
    assert not cat.has_labels and cat.metadata_fields["size"] == "integer" and cat.ids[0] == "j0"
    pq.write_table(pa.table({"image": [p.read_bytes() for p in paths], "id": [f"b{i}" for i in range(6)],
                             "label": ["a", "b"] * 3}), tmp_path / "shop.parquet")
    cat = load_catalogue(str(tmp_path / "shop.parquet"))
    assert cat.label_names == ["a", "b"] and cat.image(0).size == (48, 40)


def test_flat_and_mixed_folders(tmp_path):
    shop_images(tmp_path / "flat", n=5)
    flat = load_catalogue(str(tmp_path / "flat"))
    assert len(flat) == 5 and not flat.has_labels and flat.ids[0] == "p000"
    with pytest.raises(LookalikeError, match="no classes .* --classes needs them"):
        load_catalogue(str(tmp_path / "flat"), classes="0")
    shop_images(tmp_path / "flat" / "shoes", n=2, seed=1)
    mixed = load_catalogue(str(tmp_path / "flat"))
    assert len(mixed) == 7 and not mixed.has_labels
    assert mixed.metadata(6) == {"folder": "shoes"} and mixed.metadata(0) == {}


def test_flat_folder_index_and_search_and_labels_needed_where_they_are(tmp_path, capsys):
    shop_images(tmp_path / "flat", n=9)
    common = ["--catalogue", str(tmp_path / "flat"), "--backbone", "tiny_test", "--cache-dir", str(tmp_path / "c")]
    assert main(["index", *common]) == 0
    capsys.readouterr()
    assert main(["search", *common, "--image", str(tmp_path / "flat" / "p004.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "p004"
    assert main(["evaluate", *common]) == 2
    assert "has no classes" in capsys.readouterr().err


def test_car_class_names_give_make_body_and_year():
    assert parse_class_name("Audi TTS Coupe 2012") == ("Audi", "Coupe", 2012)
    assert parse_class_name("AM General Hummer SUV 2000") == ("AM General", "SUV", 2000)
    assert parse_class_name("Ford F-150 Regular Cab 2012") == ("Ford", "Pickup", 2012)
    assert parse_class_name("Chevrolet Corvette ZR1 2012") == ("Chevrolet", "Other", 2012)


def recommender(manifest, backend, cache) -> Recommender:
    return Recommender(load_catalogue(str(manifest)), create_embedder("tiny_test"), cache,
                       index_backend=backend).build()


def brute_force(rec, query, k, mask, exclude=()):
    """Exact top-k ids among the rows `mask` allows."""
    rows = [r for r in np.flatnonzero(mask & rec.indexed) if r not in exclude]
    vectors = rec.index.vectors(rec.row_keys[rows])
    order, _ = top_k(vectors, query[None], min(k, len(rows)))
    return [rec.catalogue.ids[rows[i]] for i in order[0]]


@pytest.mark.parametrize("backend", ["annoy", "usearch", "exact"])
def test_filters_agree_with_brute_force_and_fill_k(manifest, tmp_path, backend, monkeypatch):
    import retrieval.search.filtered as filtered

    monkeypatch.setattr(filtered, "EXACT_UP_TO", 3)  # the oversampling path, on this small catalogue
    monkeypatch.setattr(filtered, "OVERSAMPLE", 0.3)  # too few candidates at first: it must ask for more
    rec = recommender(manifest, backend, tmp_path / "cache")
    cat = rec.catalogue
    for text in ["brand == 'Acme'", "price > 40 and in_stock == true", "brand != query.brand", "not (price >= 20)",
                 "brand in ['Bolt', 'Dyno'] or label == 'red'", "id == 'sku-29'"]:
        where = parse_where(text, cat.metadata_fields)
        for row in (0, 5, 17):
            mask = where.mask(cat.metadata_table, cat.metadata_of(row, where.query_fields))
            found = rec.search_embedding(rec.item_embedding(row), 8, where=where, exclude_rows=(row,),
                                         query_row=row)
            expected = brute_force(rec, rec.item_embedding(row), 8, mask, exclude=(row,))
            assert [r.id for r in found] == expected, (text, row)  # every allowed one, in order: k filled
            assert all(mask[r.row] for r in found)


def test_an_item_query_reads_no_image_and_suggests_close_ids(manifest, tmp_path, capsys, monkeypatch):
    common = ["--catalogue", str(manifest), "--backbone", "tiny_test", "--cache-dir", str(tmp_path / "c")]
    assert main(["index", *common]) == 0
    import retrieval.embedding.embedder as embedder

    monkeypatch.setattr(embedder.Embedder, "embed", lambda *a: pytest.fail("a backbone pass for an item"))
    capsys.readouterr()
    assert main(["search", *common, "--item", "sku-4", "--where", "brand != query.brand", "--k", "5",
                 "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 5 and "sku-4" not in [r["id"] for r in results]
    assert all(r["metadata"]["brand"] != "Acme" for r in results)
    assert main(["search", *common, "--item", "sku-44"]) == 2
    assert "did you mean sku-4" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("__import__('os').system('true')", "--where: expected"),
    ("colour == 'red'", "unknown field 'colour'"),
    ("price == 'cheap'", "price is a number"),
])
def test_bad_filters_are_one_line(manifest, tmp_path, capsys, text, message):
    common = ["--catalogue", str(manifest), "--backbone", "tiny_test", "--cache-dir", str(tmp_path / "c")]
    assert main(["search", *common, "--item", "sku-1", "--where", text]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and message in err


def test_recommend_writes_every_items_exact_top_k(manifest, tmp_path, capsys):
    common = ["--catalogue", str(manifest), "--backbone", "tiny_test", "--cache-dir", str(tmp_path / "c"),
              "--index-backend", "exact"]
    for suffix in (".parquet", ".csv", ".jsonl"):
        out = tmp_path / f"top{suffix}"
        assert main(["recommend", *common, "--k", "4", "--where", "brand == query.brand", "--output", str(out)]) == 0
    table = pq.read_table(tmp_path / "top.parquet")
    assert table.column_names == ["query_id", "rank", "id", "score", "label"] and table.num_rows == 30 * 4
    rec = recommender(manifest, "exact", tmp_path / "c")
    cat = rec.catalogue
    where = parse_where("brand == query.brand", cat.metadata_fields)
    for row in range(30):
        mask = where.mask(cat.metadata_table, cat.metadata_of(row, where.query_fields))
        mine = [r["id"] for r in table.to_pylist() if r["query_id"] == cat.ids[row]]
        assert mine == brute_force(rec, rec.item_embedding(row), 4, mask, exclude=(row,))
    assert len((tmp_path / "top.jsonl").read_text().splitlines()) == 120
    with pytest.raises(SystemExit) as refused:  # exists: kept, before any work
        main(["recommend", *common, "--output", str(tmp_path / "top.csv")])
    assert refused.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
