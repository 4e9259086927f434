import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import refusal_in_child
from retrieval.errors import DamagedArtefact, LookalikeError
from retrieval.index.annoy_index import AnnoyIndex
from retrieval.index.backends import open_index
from retrieval.store.artefacts import record, seal
from retrieval.vectors import l2_normalise, top_k


def _clustered(n=3000, dim=256, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(60, dim))
    return l2_normalise(centres[rng.integers(0, 60, n)] + rng.normal(0, 0.8, (n, dim)))


def test_annoy_meets_recall_target_against_exact(tmp_path):
    emb = _clustered()
    index = AnnoyIndex.build(tmp_path / "ix", emb, {"catalogue_fingerprint": "a"})
    assert index.meta["recall_at_10"] >= 0.99
    rng = np.random.default_rng(1)  # fresh queries near the data, not the audit sample
    queries = l2_normalise(emb[rng.choice(len(emb), 100)] + rng.normal(0, 0.05, (100, emb.shape[1])))
    truth, _ = top_k(emb, queries, 10)
    hits = sum(len(set(found.tolist()) & set(t.tolist())) for found, t in zip(index.search(queries, 10)[0], truth))
    assert hits / 1000 >= 0.97
    rows, scores = index.search(emb[5], 3)
    assert rows[0, 0] == 5 and scores[0, 0] == pytest.approx(1.0, abs=1e-4)


def test_index_for_other_data_is_refused(tmp_path):
    AnnoyIndex.build(tmp_path / "ix", _clustered(n=200), {"catalogue_fingerprint": "a"})
    assert open_index(tmp_path / "ix", {"catalogue_fingerprint": "a"}) is not None
    with pytest.raises(LookalikeError, match="another catalogue"):
        open_index(tmp_path / "ix", {"catalogue_fingerprint": "b"})


# Damaged indexes, as a crash, a full disk, a careless copy or an attacker
# leaves them: each must be a DamagedArtefact naming the file, never a
# segfault, a traceback or silently wrong results.

DIM = 32
EXPECTED = {"catalogue_fingerprint": "a"}
# Opens the index and queries it in a child process, so that a crash in
# Annoy shows as the child's exit code instead of killing pytest. argv:
# folder, and "sizes" to check only sizes on open (as for an index too large
# to hash each time it is opened).
CHILD = """
import sys
import retrieval.store.artefacts as artefacts
from retrieval.errors import DamagedArtefact
from retrieval.index.backends import open_index
if sys.argv[2] == "sizes":
    artefacts.HASH_ON_OPEN_BYTES = 0
try:
    index = open_index(sys.argv[1], {"catalogue_fingerprint": "a"})
    index.search(index.embeddings[:50], 10)
except DamagedArtefact as e:
    print(e)
    sys.exit(3)
print("served results")
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("built") / "ix"
    AnnoyIndex.build(folder, _clustered(n=300, dim=DIM), EXPECTED)
    return folder


@pytest.fixture
def ix(built, tmp_path):
    """A fresh copy of a small index for each test to damage."""
    return Path(shutil.copytree(built, tmp_path / "ix"))


def truncate(path: Path, fraction: float, unit=1):
    """Cut `path` to `fraction` of its size, at a multiple of `unit` bytes."""
    path.write_bytes(path.read_bytes()[:int(path.stat().st_size // unit * fraction) * unit])


def flip_bytes(path: Path, at=0.5):
    data = bytearray(path.read_bytes())
    middle = int(len(data) * at)
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def edit_meta(folder: Path, **changes):
    """Rewrite meta.json with keys changed (None: removed), sealed again as
    Lookalike seals it: only the change is wrong, not the digest."""
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(changes)
    (folder / "meta.json").write_text(json.dumps(seal({k: v for k, v in meta.items() if v is not None})))


def replace_and_rerecord(folder: Path, name: str, data: bytes):
    """Replace a file and its record alike: only the contents are wrong."""
    (folder / name).write_bytes(data)
    files = json.loads((folder / "meta.json").read_text())["files"]
    edit_meta(folder, files=dict(files, **record(folder, [name])))


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


ANNOY_NODE_BYTES = 12 + 4 * DIM  # an angular node: descendants, two children, the vector

IN_CHILD = {  # damage -> (checks on open, what the one-line error must say)
    "index.ann truncated to half": (lambda d: truncate(d / "index.ann", 0.5), "sizes",
                                    r"index.ann: damaged \(size \d+ bytes, written as \d+"),
    # whole nodes: Annoy loads it and follows children past the end (segfault)
    "index.ann truncated to a quarter": (lambda d: truncate(d / "index.ann", 0.25, ANNOY_NODE_BYTES), "sizes",
                                         r"index.ann: damaged \(size \d+ bytes, written as \d+"),
    "index.ann emptied": (lambda d: truncate(d / "index.ann", 0), "sizes",
                          r"index.ann: damaged \(size 0 bytes, written as \d+"),
    "index.ann bit-flipped": (lambda d: flip_bytes(d / "index.ann"), "default",
                              r"index.ann: damaged \(its checksum differs"),
}


@pytest.mark.parametrize("damage", IN_CHILD)
def test_damaged_annoy_file_is_refused_and_never_crashes(ix, damage):
    apply, checks, message = IN_CHILD[damage]
    apply(ix)
    line = refusal_in_child(CHILD, ix, checks)
    assert re.search(message, line), line


IN_PROCESS = {  # damage -> what the DamagedArtefact must say
    "embeddings.npy bit-flipped": (lambda d: flip_bytes(d / "embeddings.npy", 0.9),
                                   r"embeddings.npy: damaged \(its checksum differs"),
    "embeddings.npy deleted": (lambda d: (d / "embeddings.npy").unlink(), r"embeddings.npy: missing"),
    "index.ann deleted": (lambda d: (d / "index.ann").unlink(), r"index.ann: missing"),
    "meta.json edited, its digest not": (lambda d: (d / "meta.json").write_text(
        (d / "meta.json").read_text().replace('"n_items": 300', '"n_items": 299')),
        r"meta.json: damaged \(its contents differ from the digest recorded"),
    "meta.json not JSON": (lambda d: (d / "meta.json").write_text("{oops"),
                           r"meta.json: damaged \(JSONDecodeError"),
    "meta.json not an object": (lambda d: (d / "meta.json").write_text("[1, 2]"),
                                r"meta.json: damaged \(not a JSON object"),
    "meta.json without search_k": (lambda d: edit_meta(d, search_k=None),
                                   r"meta.json: damaged or written by an older Lookalike "
                                   r"\(missing or invalid: search_k"),
    "meta.json with a dim that isn't a number": (lambda d: edit_meta(d, dim="32"), r"missing or invalid: dim"),
    "meta.json without a fingerprint": (lambda d: edit_meta(d, catalogue_fingerprint=None),
                                        r"meta.json: damaged .*\(missing: catalogue_fingerprint"),
    "meta.json from before files were recorded": (lambda d: edit_meta(d, files=None),
                                                  r"older Lookalike \(missing or invalid: files"),
    "record without index.ann": (lambda d: edit_meta(d, files={
        "embeddings.npy": json.loads((d / "meta.json").read_text())["files"]["embeddings.npy"]}),
        r"index.ann: not in the record"),
    "meta.json with another n_items": (lambda d: edit_meta(d, n_items=299),
                                       r"embeddings.npy: damaged \(holds \(300, 32\) float32, "
                                       r"meta.json records \(299, 32\)"),
    "embeddings.npy of another dtype": (lambda d: replace_and_rerecord(
        d, "embeddings.npy", npy_bytes(np.load(d / "embeddings.npy").astype(np.float64))),
        r"embeddings.npy: damaged \(holds \(300, 32\) float64"),
    "index.ann not an Annoy file": (lambda d: replace_and_rerecord(d, "index.ann", b"\x01" * 1001),
                                    r"index.ann: damaged \(Index size is not a multiple of vector size\)"),
}


@pytest.mark.parametrize("damage", IN_PROCESS)
def test_damaged_index_is_refused_with_one_clear_line(ix, damage):
    apply, message = IN_PROCESS[damage]
    apply(ix)
    with pytest.raises(DamagedArtefact, match=message) as refused:
        open_index(ix, EXPECTED)
    assert "\n" not in str(refused.value)


def test_an_undamaged_copy_opens_and_no_index_is_none(ix, tmp_path):
    assert open_index(ix, EXPECTED).meta["files"].keys() == {"index.ann", "embeddings.npy", "keys.npy"}
    assert open_index(tmp_path / "none", EXPECTED) is None


def test_k_beyond_the_catalogue_returns_every_item_ranked(ix):
    index = open_index(ix, EXPECTED)
    query = index.embeddings[7]
    rows, scores = index.search(query, 350)
    assert sorted(rows[0, :300].tolist()) == list(range(300)) and (rows[0, 300:] == -1).all()
    assert rows[0, 0] == 7 and np.all(np.diff(scores[0, :300]) <= 1e-6)
