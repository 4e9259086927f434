"""Issue #23: catalogues that open without reading their images (the scan
record), indexes that grow in place, tuning that holds."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import retrieval.data.scan as scan
from retrieval.cli.main import main
from retrieval.data.catalogues import load_catalogue


@pytest.fixture
def class_folders(class_folders):
    """The shop's files as if written an hour ago: a file changed within a
    second of a scan is hashed again next time (racily clean), by design."""
    for path in class_folders.rglob("*.png"):
        os.utime(path, (path.stat().st_atime - 3600, path.stat().st_mtime - 3600))
    return class_folders


def read_nothing(monkeypatch):
    """Any read of an image file's bytes for hashing fails the test."""
    monkeypatch.setattr(scan, "file_key", lambda path: pytest.fail(f"read {path}"))


def test_reopening_an_unchanged_catalogue_reads_no_image(class_folders, tmp_path, monkeypatch):
    first = load_catalogue(str(class_folders), cache_dir=tmp_path)
    read_nothing(monkeypatch)
    again = load_catalogue(str(class_folders), cache_dir=tmp_path)
    assert again.keys == first.keys and again.fingerprint == first.fingerprint


def test_a_changed_file_is_read_again_and_rehash_reads_all(class_folders, tmp_path, monkeypatch):
    load_catalogue(str(class_folders), cache_dir=tmp_path)
    changed = class_folders / "red" / "red1.png"
    Image.new("RGB", (48, 64), (1, 2, 3)).save(changed)  # new bytes, new size and time
    read = []
    real = scan.file_key
    monkeypatch.setattr(scan, "file_key", lambda path: read.append(os.path.basename(path)) or real(path))
    catalogue = load_catalogue(str(class_folders), cache_dir=tmp_path)
    assert read == ["red1.png"] and catalogue.keys[catalogue.ids.index("red/red1")] == real(changed)[:32]
    read.clear()
    load_catalogue(str(class_folders), cache_dir=tmp_path, rehash=True)
    assert len(read) == 12


def test_a_damaged_scan_record_is_never_trusted(class_folders, tmp_path, monkeypatch):
    first = load_catalogue(str(class_folders), cache_dir=tmp_path)
    record = next(tmp_path.glob("scans/*/*.arrow"))
    data = bytearray(record.read_bytes())
    data[len(data) // 2] ^= 0xFF
    record.write_bytes(bytes(data))
    assert load_catalogue(str(class_folders), cache_dir=tmp_path).keys == first.keys  # hashed again, all of it


@pytest.mark.parametrize("backend", ["usearch", "exact"])
def test_an_index_grows_in_place_and_a_removed_item_never_comes_back(class_folders, tmp_path, capsys, caplog,
                                                                      monkeypatch, backend):
    common = ["--catalogue", str(class_folders), "--backbone", "tiny_test", "--cache-dir", str(tmp_path / "c"),
              "--index-backend", backend]
    assert main(["index", *common]) == 0
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(class_folders / "red" / "new.png")
    shutil.copy(class_folders / "green" / "green1.png", tmp_path / "kept-aside.png")
    (class_folders / "green" / "green1.png").unlink()
    import retrieval.search.recommender as recommender

    monkeypatch.setattr(recommender, "build_index", lambda *a, **k: pytest.fail("rebuilt from scratch"))
    caplog.set_level(logging.INFO)
    assert main(["index", *common]) == 0
    assert "1 items added, 1 removed in place" in caplog.text
    capsys.readouterr()
    assert main(["search", *common, "--image", str(class_folders / "red" / "new.png"), "--k", "1", "--json"]) == 0
    assert '"id": "red/new"' in capsys.readouterr().out
    assert main(["search", *common, "--image", str(tmp_path / "kept-aside.png"), "--k", "11", "--json"]) == 0
    assert "green/green1" not in capsys.readouterr().out


def test_milvus_backend_answers_filters_like_exact_search_and_grows(tmp_path, capsys, caplog):
    """`--index-backend milvus` (Milvus Lite in the cache): the shop manifest's
    `--where` searches run inside Milvus and agree with exact search; a grown
    manifest is upserted, not rebuilt."""
    from test_shop import shop_images, write_manifest

    paths = shop_images(tmp_path / "photos")
    manifest = write_manifest(tmp_path / "shop.csv", paths[:24])
    common = ["--catalogue", str(manifest), "--backbone", "tiny_test", "--cache-dir", str(tmp_path / "c")]

    def ids(backend, *extra):
        assert main(["search", *common, "--index-backend", backend, "--item", "sku-3", "--k", "6", "--json",
                     "--no-dedup", *extra]) == 0
        return [r["id"] for r in json.loads(capsys.readouterr().out)]

    for where in ("brand != query.brand", "price > 30 and in_stock == true", "label in ['red', 'blue']"):
        assert ids("milvus", "--where", where) == ids("exact", "--where", where), where
    write_manifest(manifest, paths)  # six more items
    caplog.set_level(logging.INFO)
    assert main(["index", *common, "--index-backend", "milvus"]) == 0
    assert "6 items added, 0 removed in place" in caplog.text
    capsys.readouterr()
    assert ids("milvus", "--where", "brand == 'Acme'") == ids("exact", "--where", "brand == 'Acme'")
