"""Index backends by name, and which one a catalogue gets.

Picked from the measured curves (BENCHMARKS.md, "Index at scale"): up to
100,000 items Annoy meets recall@10 0.99 in 3.6 ms a query or less and builds
in half USearch's time, small beside a query's ~100 ms backbone pass; past
that Annoy's cost per query grows steeply (94 ms at 1M for 0.99) where
USearch's HNSW graph stays near a millisecond (1.24 ms for 0.990 at 1M),
memory-mapped from a file under half Annoy's size, with items added and
removed in place."""

from . import index as annoy_index
from . import usearch_index
from .cache import read_meta
from .errors import LookalikeError

BACKENDS = {"annoy": annoy_index, "usearch": usearch_index}
ANNOY_MAX_ITEMS = 100_000


def choose_backend(name: str, n_items: int) -> str:
    """'auto' -> annoy up to ANNOY_MAX_ITEMS items, usearch beyond."""
    if name == "auto":
        return "annoy" if n_items <= ANNOY_MAX_ITEMS else "usearch"
    if name not in BACKENDS:
        raise LookalikeError(f"index backend must be auto, annoy or usearch, not {name!r}")
    return name


def open_index(folder, expected: dict, backend: str, deep: bool | None = None):
    """The index in `folder` with the backend its files say it is (a folder
    may hold an index of either), else None; refusals as each backend's.
    `deep`: hash every file, however large (artefacts.check)."""
    meta = read_meta(folder)
    if meta is None:
        return None
    if isinstance(meta.get("files"), dict) and usearch_index.FILE in meta["files"]:
        backend = "usearch"
    elif isinstance(meta.get("files"), dict) and "index.ann" in meta["files"]:
        backend = "annoy"
    return BACKENDS[backend].open_index(folder, expected, deep=deep)


def build_index(folder, embeddings, meta: dict, backend: str):
    return BACKENDS[backend].build_index(folder, embeddings, meta)
