import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import retrieval.extract.features as features_module
import retrieval.extract.local as local_module
from retrieval.data.catalogues import load_catalogue
from retrieval.embedding.embedder import create_embedder
from retrieval.search.recommender import Recommender

ROOT = Path(__file__).resolve().parents[1]


def _recommender(folder, cache):
    return Recommender(load_catalogue(str(folder)), create_embedder("tiny_test"), cache_dir=cache)


def test_catalogue_image_comes_back_first(class_folders, tmp_path):
    rec = _recommender(class_folders, tmp_path / "cache").build()
    results = rec.search(class_folders / "red" / "red2.png", k=3)
    assert results[0].id == "red/red2" and results[0].score == pytest.approx(1.0, abs=1e-3)
    assert results[0].label == "red" and [r.rank for r in results] == [1, 2, 3]
    exact = rec.search(class_folders / "red" / "red2.png", k=3, exact=True)
    assert [r.id for r in exact] == [r.id for r in results]


@pytest.fixture
def extracted(monkeypatch):
    """The catalogue rows each extraction was asked for, one list per run."""
    runs = []
    real = local_module.local_batches

    def recording(catalogue, embedder, rows, run, batch_size=8):
        runs.append([catalogue.ids[r] for r in rows])
        return real(catalogue, embedder, rows, run, batch_size)

    monkeypatch.setattr(local_module, "local_batches", recording)
    return runs


def test_store_computes_only_new_or_changed_images(class_folders, tmp_path, extracted):
    first, _ = _recommender(class_folders, tmp_path / "cache").features()
    again, _ = _recommender(class_folders, tmp_path / "cache").features()
    assert len(extracted) == 1 and len(extracted[0]) == 12 and np.array_equal(first, again)
    changed = class_folders / "blue" / "blue0.png"
    os.utime(changed, (1e9, 1e9))  # a copy or a fresh checkout: same bytes, new mtime
    _recommender(class_folders, tmp_path / "cache").features()
    assert len(extracted) == 1
    Image.new("RGB", (64, 48), (250, 250, 0)).save(changed)  # new content under an old name
    (class_folders / "red" / "red1.png").unlink()
    (class_folders / "green" / "new.png").write_bytes((class_folders / "red" / "red0.png").read_bytes())
    rec = _recommender(class_folders, tmp_path / "cache")
    features, rows = rec.features()
    assert extracted[1:] == [["blue/blue0"]]  # green/new has red0's bytes: stored already
    ids = [rec.catalogue.ids[r] for r in rows]
    assert len(rows) == 12 and "red/red1" not in ids
    assert np.array_equal(features[ids.index("green/new")], first[8])  # red0's features


def test_added_images_are_indexed_and_find_themselves(class_folders, tmp_path, extracted):
    _recommender(class_folders, tmp_path / "cache").build()
    rng = np.random.default_rng(1)
    for name in ("added0", "added1"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(class_folders / "red" / f"{name}.png")
    rec = _recommender(class_folders, tmp_path / "cache").build()
    assert extracted[1:] == [["red/added0", "red/added1"]] and rec.index.meta["n_items"] == 14
    for name in ("added0", "added1"):
        assert rec.search(class_folders / "red" / f"{name}.png", k=1)[0].id == f"red/{name}"


def test_an_interrupted_extraction_resumes_where_it_stopped(class_folders, tmp_path, monkeypatch, extracted, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(features_module, "CHUNK_IMAGES", 1)  # a chunk per batch of 8
    real_write = features_module.FeatureStore.write
    writes = []

    def crash_after_one_chunk(store, keys, arrays, where):
        if writes:
            raise KeyboardInterrupt
        writes.append(keys)
        real_write(store, keys, arrays, where)

    monkeypatch.setattr(features_module.FeatureStore, "write", crash_after_one_chunk)
    with pytest.raises(KeyboardInterrupt):
        _recommender(class_folders, tmp_path / "cache").features()
    monkeypatch.setattr(features_module.FeatureStore, "write", real_write)
    resumed, rows = _recommender(class_folders, tmp_path / "cache").features()
    assert len(extracted[1]) == 4 and "8 of 12 images already stored" in caplog.text
    whole, _ = _recommender(class_folders, tmp_path / "other").features()
    assert np.array_equal(resumed, whole) and len(rows) == 12


def test_subset_reuses_the_sources_stored_features(class_folders, tmp_path, monkeypatch):
    embedder = create_embedder("tiny_test")
    whole, _ = Recommender(load_catalogue(str(class_folders)), embedder, cache_dir=tmp_path).features()
    monkeypatch.setattr(local_module, "local_batches", lambda *a, **k: pytest.fail("re-extracted a stored subset"))
    subset = load_catalogue(str(class_folders), classes="1-2", per_class=3)  # green, red: first 3 each
    features, rows = Recommender(subset, embedder, cache_dir=tmp_path).features()
    assert [subset.ids[r] for r in rows] == ["green/green0", "green/green1", "green/green2",
                                             "red/red0", "red/red1", "red/red2"]
    assert np.array_equal(features, whole[[4, 5, 6, 8, 9, 10]])


def test_corrupt_file_is_skipped_not_fatal(class_folders, tmp_path, caplog):
    (class_folders / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    rec = _recommender(class_folders, tmp_path / "cache").build()
    assert rec.index.meta["n_items"] == 12
    assert "skipped 1 unreadable image" in caplog.text
    assert all(r.id != "red/broken" for r in rec.search(class_folders / "red" / "red0.png", k=13))


def test_real_weights_cat_crops_closer_than_cat_and_coffee():
    from PIL import Image
    from skimage import data

    embedder = create_embedder("efficientnet_lite0")
    cat = Image.fromarray(data.chelsea())
    w, h = cat.size
    crops = [cat.crop((0, 0, int(w * 0.8), h)), cat.crop((int(w * 0.2), 0, w, h)), Image.fromarray(data.coffee())]
    f = embedder.embed(crops)
    assert f[0] @ f[1] > f[0] @ f[2] + 0.1


def test_cli_index_then_search_on_real_cars(cars, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    common = ["--catalogue", str(cars), "--classes", "14-15", "--backbone", "efficientnet_lite0",
              "--cache-dir", str(tmp_path / "cache")]
    def run(*args):
        return subprocess.run([sys.executable, "-m", "retrieval", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, check=True)

    assert "recall@10" in run("index", *common).stdout
    out = run("search", *common, "--image", str(cars / "cars_train" / "00001.jpg"), "--k", "5", "--json").stdout
    results = json.loads(out)
    assert results[0]["id"] == "00001" and results[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert sum(r["label"] == "Audi TTS Coupe 2012" for r in results) >= 3
    bad = subprocess.run([sys.executable, "-m", "retrieval", "search", *common, "--image", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "error:" in bad.stderr


def test_usearch_backend_answers_like_annoy_and_auto_picks_by_size(class_folders, tmp_path, capsys):
    from retrieval.cli.main import main
    from retrieval.index.backends import choose_backend

    query = class_folders / "green" / "green1.png"
    annoy = _recommender(class_folders, tmp_path / "cache").build()
    usearch = Recommender(load_catalogue(str(class_folders)), create_embedder("tiny_test"), tmp_path / "cache",
                          index_backend="usearch").build()
    assert annoy.index_backend == "annoy" and type(usearch.index).__name__ == "UsearchIndex"
    assert [r.id for r in usearch.search(query, k=4)] == [r.id for r in annoy.search(query, k=4)]
    assert [r.id for r in usearch.search(query, k=4, exact=True)] == [r.id for r in annoy.search(query, k=4)]
    assert choose_backend("auto", 100_000) == "annoy" and choose_backend("auto", 100_001) == "usearch"
    assert main(["index", "--catalogue", str(class_folders), "--backbone", "tiny_test", "--index-backend", "usearch",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "(usearch, connectivity" in capsys.readouterr().out


def test_several_decoding_threads_keep_batches_in_order(class_folders, monkeypatch):
    """On a GPU several threads decode; batches still come back in row order
    with the features of their own images, however the threads finish."""
    catalogue, embedder = load_catalogue(str(class_folders)), create_embedder("tiny_test")
    rows = list(range(len(catalogue)))
    alone = list(local_module.local_engine(catalogue, embedder, rows, batch_size=2))
    real_decode = local_module._decode

    def late_first(catalogue, embedder, batch_rows):  # earlier batches finish last
        time.sleep(0.05 * (len(rows) - batch_rows[0]) / len(rows))
        return real_decode(catalogue, embedder, batch_rows)

    monkeypatch.setattr(local_module, "_decode", late_first)
    monkeypatch.setattr(local_module, "decode_workers", lambda device: 4)
    threaded = list(local_module.local_engine(catalogue, embedder, rows, batch_size=2))
    assert [done for done, _, _ in threaded] == [done for done, _, _ in alone]
    for (_, features, _), (_, expected, _) in zip(threaded, alone):
        np.testing.assert_allclose(features, expected, atol=1e-6)
