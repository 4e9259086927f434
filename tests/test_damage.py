"""Damaged artefacts, as a crash, a full disk or an attacker leaves them:
each is rebuilt (a cache entry) or refused with one clear line (a file the
user named), never a segfault, a traceback or silently wrong scores."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import noise_shop
from retrieval.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def common(shop, cache):
    return ["--catalogue", str(shop), "--backbone", "tiny_test", "--cache-dir", str(cache)]


def flip_bytes(path: Path, at: float = 0.5):
    data = bytearray(path.read_bytes())
    middle = int(len(data) * at)
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def truncate(path: Path, fraction: float = 0.5):
    path.write_bytes(path.read_bytes()[:int(path.stat().st_size * fraction)])


def search(shop, cache, capsys, *extra):
    capsys.readouterr()
    code = main(["search", *common(shop, cache), "--image", str(shop / "red" / "red1.png"), "--k", "3", "--json",
                 *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


DAMAGES = {
    "index.ann truncated": lambda d: truncate(d / "index.ann"),
    "index.ann emptied": lambda d: truncate(d / "index.ann", 0),
    "index.ann bit-flipped": lambda d: flip_bytes(d / "index.ann"),
    "embeddings.npy bit-flipped": lambda d: flip_bytes(d / "embeddings.npy", 0.9),
    "embeddings.npy deleted": lambda d: (d / "embeddings.npy").unlink(),
    "meta.json not JSON": lambda d: (d / "meta.json").write_text("{oops"),
    "meta.json without its record": lambda d: (d / "meta.json").write_text(json.dumps(
        {k: v for k, v in json.loads((d / "meta.json").read_text()).items() if k != "files"})),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_index_is_refused_when_named_and_rebuilt_in_the_cache(class_folders, tmp_path, capsys, caplog,
                                                                      damage):
    named = tmp_path / "my-index"
    assert main(["index", *common(class_folders, tmp_path / "cache"), "--index", str(named)]) == 0
    DAMAGES[damage](named)
    code, out, err = search(class_folders, tmp_path / "cache", capsys, "--index", str(named))
    assert code == 2 and out == "" and "damaged" in err and "--rebuild" in err and len(err.strip().splitlines()) == 1

    assert main(["index", *common(class_folders, tmp_path / "cache")]) == 0  # the cached one
    cached = next((tmp_path / "cache" / "indexes").iterdir())
    DAMAGES[damage](cached)
    code, out, err = search(class_folders, tmp_path / "cache", capsys)
    assert code == 0 and json.loads(out)[0]["id"] == "red/red1" and "rebuilding" in caplog.text


@pytest.mark.parametrize("backend", ["annoy", "usearch"])
def test_a_named_index_too_large_to_hash_on_open_is_hashed_anyway(class_folders, tmp_path, capsys, monkeypatch,
                                                                 backend):
    """Cache files past HASH_ON_OPEN_BYTES get only their size checked on
    open; a folder the user named is refused, never rebuilt, so it is always
    hashed whole: a same-size bit flip is caught."""
    import retrieval.store.artefacts as artefacts

    named = tmp_path / "my-index"
    assert main(["index", *common(class_folders, tmp_path / "cache"), "--index", str(named),
                 "--index-backend", backend]) == 0
    monkeypatch.setattr(artefacts, "HASH_ON_OPEN_BYTES", 16)  # every file counts as large
    flip_bytes(named / ("index.ann" if backend == "annoy" else "index.usearch"), 0.7)
    code, out, err = search(class_folders, tmp_path / "cache", capsys, "--index", str(named),
                            "--index-backend", backend)
    assert code == 2 and out == "" and "checksum differs" in err


def test_truncated_index_never_crashes_the_process(class_folders, tmp_path):
    """Annoy memory-maps an index blindly: a truncated one used to segfault
    (exit 139) on the first query. Run in a child so a crash can't hide."""
    named = tmp_path / "ix"
    args = [*common(class_folders, tmp_path / "cache"), "--index", str(named)]
    def run(*extra):
        return subprocess.run([sys.executable, "-m", "retrieval", *extra], cwd=ROOT, capture_output=True, text=True)

    assert run("index", *args).returncode == 0
    truncate(named / "index.ann", 0.3)
    searched = run("search", *args, "--image", str(class_folders / "red" / "red1.png"))
    assert searched.returncode == 2, searched.stderr[-2000:]
    assert "damaged" in searched.stderr and "Traceback" not in searched.stderr


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_damaged_features_are_recomputed_not_served(class_folders, tmp_path, capsys, caplog, damage):
    cache = tmp_path / "cache"
    code, first, _ = search(class_folders, cache, capsys)
    chunk = next((cache / "features").glob("*/*.npz"))
    (truncate if damage == "truncated" else flip_bytes)(chunk)
    assert main(["index", *common(class_folders, cache), "--rebuild"]) == 0
    code, again, err = search(class_folders, cache, capsys)
    assert code == 0 and json.loads(again) == json.loads(first)
    assert "damaged" in caplog.text


def test_damaged_head_is_refused(class_folders, tmp_path, capsys):
    from retrieval.embedding.embedder import Embedder, trained_head
    from retrieval.models.backbones import create_backbone
    from retrieval.models.heads import EmbeddingHead

    run, backbone = tmp_path / "run", create_backbone("tiny_test")
    Embedder(backbone, head=trained_head(EmbeddingHead(backbone.dim, 8, 0), backbone, "run")).save_pretrained(run)
    code, out, _ = search(class_folders, tmp_path / "cache", capsys, "--head", str(run))
    assert code == 0
    flip_bytes(run / "head.safetensors", 0.8)
    code, out, err = search(class_folders, tmp_path / "cache", capsys, "--head", str(run))
    assert code == 2 and out == "" and "head.safetensors: damaged" in err


def test_verify_finds_and_repairs_damage(class_folders, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(["index", *common(class_folders, cache)]) == 0
    capsys.readouterr()
    assert main(["verify", "--cache-dir", str(cache)]) == 0
    assert "3 checked, 0 damaged" in capsys.readouterr().out  # feature store, index, converted network
    flip_bytes(next((cache / "features").glob("*/*.npz")))
    assert main(["verify", "--cache-dir", str(cache)]) == 1
    assert "DAMAGED  features/" in capsys.readouterr().out
    assert main(["verify", "--cache-dir", str(cache), "--repair"]) == 0
    assert not list((cache / "features").glob("*/*.npz"))
    assert main(["index", *common(class_folders, cache)]) == 0


def test_a_failed_chunk_write_leaves_nothing_half_written(class_folders, tmp_path, monkeypatch):
    """A crash while a chunk is written (here: the disk fills up half way)
    leaves no chunk or temp file behind; the next run computes them whole."""
    import retrieval.store.feature_store as store_module
    from retrieval.store.atomic import atomic_path

    cache = tmp_path / "cache"

    def full_disk(path, data):
        with atomic_path(path) as tmp:
            tmp.write_bytes(data[:len(data) // 2])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "write_bytes", full_disk)
    assert main(["index", *common(class_folders, cache)]) == 2  # one line: the disk is full
    assert [p.name for p in (cache / "features").glob("*/*")] == ["meta.json"]
    monkeypatch.undo()
    assert main(["index", *common(class_folders, cache)]) == 0
    assert len(list((cache / "features").glob("*/*.npz"))) == 1


def test_index_never_replaces_a_folder_of_other_files(class_folders, tmp_path, capsys):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    assert main(["index", *common(class_folders, tmp_path / "cache"), "--index", str(mine)]) == 2
    assert "refusing to replace them" in capsys.readouterr().err
    assert (mine / "holiday.jpg").read_bytes() == b"precious"


@pytest.mark.parametrize("command", ["index", "finetune"])
def test_a_killed_run_resumes_and_leaves_no_index_or_run_behind(tmp_path, command):
    """kill -9 in the middle of feature extraction (real weights, so it takes
    seconds), once a chunk is stored: no index or run folder is left behind
    (a half run would be taken for a finished one), and the same command run
    again resumes from the stored chunks and completes."""
    import signal
    import time

    shop = noise_shop(tmp_path / "shop", classes=10, per_class=12)
    cache, run = tmp_path / "cache", tmp_path / "run"
    args = {"index": ["-m", "retrieval", "index"],
            "finetune": ["-m", "finetune", "--output", str(run), "--epochs", "1"]}
    argv = [sys.executable, *args[command], "--catalogue", str(shop), "--backbone", "efficientnet_lite0",
            "--cache-dir", str(cache)]
    child = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in child.stderr:  # wait until extraction is under way
        if "features efficientnet_lite0" in line and "/120" in line:
            break
    while not list(cache.glob("features/*/*.npz")) and child.poll() is None:
        time.sleep(0.05)
    assert child.poll() is None, "finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not list(cache.glob("indexes/*")) and not run.exists()
    again = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "of 120 images already stored" in again.stderr
    assert (run / "head.safetensors").is_file() if command == "finetune" else list((cache / "indexes").glob("*"))
