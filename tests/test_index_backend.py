"""The USearch backend (retrieval/index/usearch_index.py) on small data: recall
against exact search, add and remove in place, reopening, and damage refused
before USearch reads the file."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import refusal_in_child
from retrieval.bench.synthetic import Clustered
from retrieval.errors import DamagedArtefact, LookalikeError
from retrieval.index.backends import open_index
from retrieval.index.usearch_index import FILE, UsearchIndex
from retrieval.store.artefacts import seal
from retrieval.vectors import recall_at_k, top_k

N, DIM = 2000, 32
# Spread wide enough that the cheapest search effort misses the target
# (recall .976): the build's tuning is what meets it.
DATA = Clustered(DIM, n_clusters=5, seed=0, spread=1.5)
EXPECTED = {"catalogue_fingerprint": "a"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("built") / "ix"
    UsearchIndex.build(folder, DATA.points(N), EXPECTED, threads=1)
    return folder


@pytest.fixture
def ix(built, tmp_path):
    """A fresh copy for each test to change or damage."""
    return Path(shutil.copytree(built, tmp_path / "ix"))


def test_recall_against_exact_meets_the_target(built):
    index = open_index(built, EXPECTED)
    assert index.meta["recall_at_10"] >= 0.99
    queries = DATA.queries(300)  # fresh points, not the build's audit sample
    truth, true_scores = top_k(DATA.points(N), queries, 10)
    rows, scores = index.search(queries, 10)
    assert recall_at_k(rows, truth) >= 0.99
    np.testing.assert_allclose(scores[:, 0], true_scores[:, 0], atol=1e-5)  # cosine, as exact search scores


def test_one_query_gives_itself_first_with_cosine_one(built):
    index = open_index(built, EXPECTED)
    rows, scores = index.search(DATA.points(N)[5], 3)
    assert rows.shape == (1, 3) and rows[0, 0] == 5 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_added_vector_is_found_first_for_itself_and_saved(ix):
    index = open_index(ix, EXPECTED)
    new = DATA.queries(1)[0]
    index.add(new[None, :] * 3.0, [N + 7])  # not normalised: the index normalises it
    rows, scores = index.search(new, 1)
    assert rows.tolist() == [[N + 7]] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    reopened = open_index(ix, EXPECTED)
    assert len(reopened) == N + 1 and reopened.search(new, 1)[0].tolist() == [[N + 7]]
    with pytest.raises(LookalikeError, match="already in the index"):
        reopened.add(new[None, :], [N + 7])


def test_removed_item_is_never_returned_even_after_reopening(ix):
    index = open_index(ix, EXPECTED)
    points = DATA.points(N)
    index.remove([5])
    assert 5 not in index.search(points[5], 10)[0]
    assert 5 not in index.search(points[5], N)[0]  # the exact path too
    reopened = open_index(ix, EXPECTED)
    assert len(reopened) == N - 1 and 5 not in reopened.search(points[:50], 10)[0]
    with pytest.raises(LookalikeError, match="not in the index"):
        reopened.remove([5])


def test_reopening_gives_the_same_answers_viewed_or_loaded(built):
    queries = DATA.queries(50)
    viewed, loaded = open_index(built, EXPECTED), open_index(built, EXPECTED, view=False)
    for a, b in zip(viewed.search(queries, 10), loaded.search(queries, 10)):
        np.testing.assert_array_equal(a, b)


def mapped(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_served_from_disk_memory_mapped_unless_asked_to_load(built, tmp_path):
    copy = Path(shutil.copytree(built, tmp_path / "ix"))
    loaded = open_index(copy, EXPECTED, view=False)
    assert not mapped(copy / FILE)
    viewed = open_index(copy, EXPECTED)
    assert mapped(copy / FILE)
    assert len(viewed) == len(loaded) == N


def test_index_for_other_data_is_refused(built):
    with pytest.raises(LookalikeError, match="another catalogue"):
        open_index(built, {"catalogue_fingerprint": "b"})


# Opens and queries in a child process, so that a crash in USearch shows as an
# exit code instead of killing pytest. argv: folder, "sizes" to check only
# sizes on open (as for an index too large to hash each time).
CHILD = """
import sys
import numpy as np
import retrieval.store.artefacts as artefacts
from retrieval.errors import DamagedArtefact
from retrieval.index.backends import open_index
if sys.argv[2] == "sizes":
    artefacts.HASH_ON_OPEN_BYTES = 0
try:
    open_index(sys.argv[1], {"catalogue_fingerprint": "a"}).search(np.ones((20, 32), np.float32) / 32 ** 0.5, 10)
except DamagedArtefact as e:
    print(e)
    sys.exit(3)
print("served results")
"""


def cut(path: Path, fraction: float):
    path.write_bytes(path.read_bytes()[:int(path.stat().st_size * fraction)])


def flip(path: Path, at=0.5):
    data = bytearray(path.read_bytes())
    middle = int(len(data) * at)
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


DAMAGE = {  # damage -> (checks on open, what the one line must say)
    "truncated to half": (lambda d: cut(d / FILE, 0.5), "sizes", r"index.usearch: damaged \(size \d+ bytes"),
    "emptied": (lambda d: cut(d / FILE, 0), "sizes", r"index.usearch: damaged \(size 0 bytes"),
    "bit-flipped in the graph": (lambda d: flip(d / FILE, 0.95), "default", r"index.usearch: damaged \(its checksum"),
    "deleted": (lambda d: (d / FILE).unlink(), "default", r"index.usearch: missing"),
    "meta.json without expansion_search": (
        lambda d: (d / "meta.json").write_text(json.dumps(seal(
            {k: v for k, v in json.loads((d / "meta.json").read_text()).items() if k != "expansion_search"}))),
        "default", r"missing or invalid: expansion_search"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_index_is_refused_in_one_line_and_never_crashes(ix, damage):
    apply, checks, message = DAMAGE[damage]
    apply(ix)
    line = refusal_in_child(CHILD, ix, checks)
    assert re.search(message, line), line


def test_meta_json_disagreeing_with_the_file_is_refused(ix):
    meta = json.loads((ix / "meta.json").read_text())
    (ix / "meta.json").write_text(json.dumps(seal(dict(meta, n_items=N - 1))))
    with pytest.raises(DamagedArtefact, match=r"holds 2000 items of dimension 32, meta.json records 1999"):
        open_index(ix, EXPECTED)


def test_usearch_is_imported_only_when_an_index_is_used():
    """usearch imported before torch makes torch's JIT tracing (OpenVINO's
    conversion) ~50x slower in that process: commands load it only to build
    or open an index, after their backbone."""
    import subprocess
    import sys

    script = "import sys, retrieval.cli.main, retrieval.index.backends; print('usearch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stdout.strip() == "False"
