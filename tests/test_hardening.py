"""Issue #19's cases, each as an attacker or a careless user would try it:
nothing of the user's is deleted, every failure is one line (exit 2, no
traceback), and what reaches a client names no server path."""

import errno
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import noise_shop
from finetune.cli import main as finetune_main
from retrieval.cli.main import main
from retrieval.data.catalogues import load_catalogue
from retrieval.embedding.embedder import create_embedder
from retrieval.errors import LookalikeError
from retrieval.extract.features import catalogue_features
from retrieval.search.limits import whole_number
from retrieval.search.public import public
from retrieval.search.service import Service
from retrieval.search.spaces import CatalogueConfig
from retrieval.store import locks
from retrieval.store.prune import prune

ROOT = Path(__file__).resolve().parents[1]


def common(shop, cache):
    return ["--catalogue", str(shop), "--backbone", "tiny_test", "--cache-dir", str(cache)]


def one_line_error(capsys) -> str:
    """The one error line on stderr (progress bars may come before it), and no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    return errors[0]


# 1. never delete what Lookalike did not write

def precious(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "precious.txt").write_text("mine")
    (folder / "sub" / "more.txt").write_text("also mine")
    return folder


@pytest.mark.parametrize("method", ["head", "autoencoder"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_finetune_output_never_replaces_a_folder_that_is_not_a_run(class_folders, tmp_path, capsys, method,
                                                                   overwrite):
    mine = precious(tmp_path / "mine")
    code = finetune_main(["--method", method, *common(class_folders, tmp_path / "cache"), "--epochs", "1",
                          "--output", str(mine), *overwrite])
    assert code == 2 and "refusing to replace" in one_line_error(capsys)
    assert (mine / "precious.txt").read_text() == "mine" and (mine / "sub" / "more.txt").is_file()


def test_finetune_overwrite_on_the_project_checkout_is_refused(class_folders, tmp_path, capsys):
    before = sorted(p.name for p in ROOT.iterdir())
    code = finetune_main([*common(class_folders, tmp_path / "cache"), "--output", str(ROOT), "--overwrite"])
    assert code == 2 and "refusing to replace" in one_line_error(capsys)
    assert sorted(p.name for p in ROOT.iterdir()) == before


def test_a_run_is_replaced_with_overwrite_and_kept_without(tmp_path, capsys):
    shop = noise_shop(tmp_path / "shop", classes=4, per_class=3)
    args = [*common(shop, tmp_path / "cache"), "--epochs", "1", "--validation-fraction", "0.5",
            "--output", str(tmp_path / "run")]
    assert finetune_main(args) == 0
    assert finetune_main(args) == 2 and "already holds a fine-tuned head" in one_line_error(capsys)
    assert finetune_main([*args, "--overwrite"]) == 0


def test_an_index_folder_holding_other_files_is_never_replaced(class_folders, tmp_path, capsys):
    mine = precious(tmp_path / "mine")
    assert main(["index", *common(class_folders, tmp_path / "cache"), "--index", str(mine), "--rebuild"]) == 2
    assert "refusing to replace" in one_line_error(capsys) and (mine / "precious.txt").is_file()


def test_prune_and_repair_touch_only_a_cache_lookalike_wrote(tmp_path, capsys):
    home = tmp_path / "home"
    (home / "features" / "old").mkdir(parents=True)
    os.utime(home / "features" / "old", (0, 0))
    assert main(["prune", "--unused-for", "1", "--cache-dir", str(home)]) == 2
    assert "not a Lookalike cache" in one_line_error(capsys) and (home / "features" / "old").is_dir()
    assert main(["verify", "--repair", "--cache-dir", str(home)]) == 2
    assert "not a Lookalike cache" in one_line_error(capsys)


# 2. bounded numbers

def test_a_huge_classes_range_is_one_line_or_free(class_folders, tmp_path, capsys):
    started = time.perf_counter()
    assert main(["index", *common(class_folders, tmp_path / "cache"), "--classes", "1-99999999999999"]) == 2
    assert "up to 9 digits" in one_line_error(capsys)
    assert len(load_catalogue(str(class_folders), classes="0-999999999")) == 12  # a range is never expanded
    assert time.perf_counter() - started < 20


@pytest.mark.parametrize("k", [float("nan"), float("inf"), 10**15, 2.5, "ten", True, None])
def test_absurd_k_is_one_clear_message(k):
    with pytest.raises(LookalikeError, match=r"k must be a whole number from 1 to 50"):
        whole_number(k, "k", 1, 50)


# 3. any file name, any unreadable file

def test_a_file_name_that_is_not_utf8_is_skipped_and_counted(class_folders, tmp_path, capsys, caplog):
    bad = os.fsencode(str(class_folders / "red")) + b"/caf\xe9.png"
    Image.new("RGB", (8, 8)).save(open(bad, "wb"), format="PNG")  # noqa: SIM115
    assert main(["index", *common(class_folders, tmp_path / "cache")]) == 0
    assert "12 items" in capsys.readouterr().out
    assert "skipped 1 files whose names are not valid UTF-8" in caplog.text and "caf\\xe9.png" in caplog.text


def test_an_unreadable_file_is_skipped_and_counted(class_folders, monkeypatch, caplog):
    import retrieval.data.scan as scan

    real = scan.file_key

    def eio(path):
        if Path(path).name == "red1.png":
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real(path)

    monkeypatch.setattr(scan, "file_key", eio)
    assert len(load_catalogue(str(class_folders))) == 11 and "skipped 1 unreadable files" in caplog.text


def test_the_app_lists_a_catalogue_it_cannot_read_and_serves_the_others(class_folders, tmp_path, monkeypatch):
    import retrieval.search.service as service_module

    real = service_module.load_catalogue

    def broken(spec, *args, **kwargs):
        if spec.endswith("broken"):
            raise UnicodeEncodeError("utf-8", "\udce9", 0, 1, "surrogates not allowed")
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(service_module, "load_catalogue", broken)
    service = Service([CatalogueConfig("broken", str(tmp_path / "broken"), "tiny_test"),
                       CatalogueConfig("shop", str(class_folders), "tiny_test")], cache_dir=tmp_path / "cache")
    states = {s["catalogue"]: s["status"] for s in service.status()}
    assert states["broken"].startswith("unavailable: UnicodeEncodeError") and states["shop"] == "building"


# 4. an index's metadata is in its record

def test_an_edited_meta_json_is_never_served(class_folders, tmp_path, capsys):
    """Item 4 of #19: a digit flipped in meta.json's rows made search answer with
    another item. Rows are no longer there (keys.npy, checksummed, maps the
    index to items), but any edit of meta.json is damage."""
    cache, named = tmp_path / "cache", tmp_path / "named"
    assert main(["index", *common(class_folders, cache), "--index", str(named)]) == 0
    meta = (named / "meta.json").read_text()
    (named / "meta.json").write_text(meta.replace('"search_k": 100', '"search_k": 101'))
    assert (named / "meta.json").read_text() != meta
    args = ["search", *common(class_folders, cache), "--image", str(class_folders / "red" / "red1.png")]
    assert main([*args, "--index", str(named), "--exact"]) == 2 and "digest" in one_line_error(capsys)
    assert main(["verify", "--cache-dir", str(cache), "--index", str(named)]) == 1
    assert "1 damaged" in capsys.readouterr().out


# 6, 7. nothing the server shows carries a path or a caller's whole input

def test_public_messages_carry_no_path_and_are_short():
    assert public("catalogue '/srv/data/cars': no such folder") == "catalogue '<path>': no such folder"
    assert public("unavailable (/srv/runs/x/head.safetensors: damaged)") == "unavailable (<path>: damaged)"
    assert "https://huggingface.co/x" in public("see https://huggingface.co/x")
    assert len(public("x" * 10_000_000)) <= 300


def test_a_10_mb_catalogue_name_gets_a_short_refusal(class_folders, tmp_path):
    service = Service([CatalogueConfig("shop", str(class_folders), "tiny_test")], cache_dir=tmp_path / "cache")
    with pytest.raises(LookalikeError) as refused:
        service.get("x" * 10_000_000)
    assert len(str(refused.value)) < 400


# 9. a colon in a folder name

def test_an_existing_path_with_a_colon_wins_over_a_split(class_folders, tmp_path):
    versioned = tmp_path / "cat:v2"
    class_folders.rename(versioned)
    assert len(load_catalogue(str(versioned))) == 12


# 10. one line for every failure

@pytest.mark.parametrize("case", ["/proc/self", "not parquet", "cache-dir is a file", "index is a file"])
def test_one_line_for_every_failure(class_folders, tmp_path, capsys, case):
    cache, args = tmp_path / "cache", common(class_folders, tmp_path / "cache")
    (tmp_path / "file").write_text("x")
    if case == "/proc/self":
        args = common("/proc/self", cache)
    elif case == "not parquet":
        (tmp_path / "x.parquet").write_bytes(b"PAR1 but not really")
        args = common(tmp_path / "x.parquet", cache)
    elif case == "cache-dir is a file":
        args = common(class_folders, tmp_path / "file")
    else:
        args = [*args, "--index", str(tmp_path / "file")]
    assert main(["index", *args]) == 2
    one_line_error(capsys)


def test_a_one_image_catalogue_indexes_and_answers(tmp_path, capsys):
    (tmp_path / "one" / "a").mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 0, 0)).save(tmp_path / "one" / "a" / "only.png")
    assert main(["search", *common(tmp_path / "one", tmp_path / "cache"), "--image",
                 str(tmp_path / "one" / "a" / "only.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "a/only"


def test_evaluate_json_naming_a_folder_is_refused_before_any_work(class_folders, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", *common(class_folders, tmp_path / "cache"), "--json", str(tmp_path)])
    assert exited.value.code == 2 and "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("code, advice", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")])
def test_a_full_disk_or_a_read_only_cache_is_one_line(class_folders, tmp_path, capsys, monkeypatch, code, advice):
    import retrieval.store.feature_store as feature_store

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "cache" / "features" / "x.npz"))

    monkeypatch.setattr(feature_store, "write_bytes", fail)
    assert main(["index", *common(class_folders, tmp_path / "cache")]) == 2
    assert advice in one_line_error(capsys)


# 11. verify covers every kind of entry; a damaged thumbnail is never served

def test_verify_covers_converted_networks_and_thumbnails(class_folders, tmp_path, capsys):
    from retrieval.models.backbones import create_backbone
    from retrieval.search.thumbnails import Thumbnails, data_url

    cache = tmp_path / "cache"
    assert main(["index", *common(class_folders, cache), "--runtime", "openvino"]) == 0
    catalogue = load_catalogue(str(class_folders))
    thumbnail = Thumbnails(cache / "thumbnails").path(catalogue, 0)
    network = next(cache.glob("openvino/*/model.bin"))
    network.write_bytes(network.read_bytes()[:-8] + b"\x00" * 8)
    thumbnail.write_bytes(b"<script>alert(1)</script>")
    capsys.readouterr()
    assert main(["verify", "--cache-dir", str(cache)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED  openvino/" in out and f"DAMAGED  thumbnails/{catalogue.fingerprint}/{thumbnail.name}" in out
    served = Thumbnails(cache / "thumbnails").path(catalogue, 0)  # made again, never sent as it is
    assert data_url(served).startswith("data:image/png;base64,") and b"script" not in served.read_bytes()
    create_backbone("tiny_test", runtime="openvino", cache_dir=cache).warm_up()  # converted again, warned
    assert main(["verify", "--repair", "--cache-dir", str(cache)]) == 0


# 12. prune never removes what a running command writes; two extractions share the work

def test_prune_waits_for_a_running_writer(class_folders, tmp_path):
    cache = tmp_path / "cache"
    assert main(["index", *common(class_folders, cache)]) == 0
    for path in cache.rglob("*"):
        os.utime(path, (0, 0))
    finished = []
    with locks.writing(cache):
        pruning = threading.Thread(target=lambda: finished.append(prune(cache, 1)))
        pruning.start()
        pruning.join(1.0)
        assert pruning.is_alive() and not finished  # waits while a command writes
    pruning.join(10)
    assert finished and finished[0]  # then prunes what nothing used


def test_two_extractions_of_one_catalogue_share_the_work(class_folders, tmp_path, monkeypatch):
    import retrieval.extract.local as local

    extracted, real = [], local.local_batches

    def slow(catalogue, embedder, rows, run, batch_size=8):
        for batch in real(catalogue, embedder, rows, run, batch_size):
            extracted.extend(batch[0])
            time.sleep(0.05)
            yield batch

    monkeypatch.setattr(local, "local_batches", slow)
    catalogue, embedder = load_catalogue(str(class_folders)), create_embedder("tiny_test", runtime="torch")
    results = []
    threads = [threading.Thread(target=lambda: results.append(catalogue_features(catalogue, embedder, tmp_path)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2 and sorted(extracted) == list(range(12))  # each image once, not twice
    assert np.array_equal(results[0][0], results[1][0])
