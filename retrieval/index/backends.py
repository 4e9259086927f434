"""Index backends by name, and which one a catalogue gets.

Picked from the measured curves (BENCHMARKS.md, "Index at scale"): up to
100,000 items Annoy meets recall@10 0.99 in 3.6 ms a query or less and builds
in half USearch's time, small beside a query's ~100 ms backbone pass; past
that Annoy's cost per query grows steeply (94 ms at 1M for 0.99) where
USearch's HNSW graph stays near a millisecond (1.24 ms for 0.990 at 1M),
memory-mapped from a file under half Annoy's size, with items added and
removed in place."""

from pathlib import Path

from retrieval.errors import LookalikeError
from retrieval.index.annoy_index import AnnoyIndex
from retrieval.index.base import Index, check_fingerprints
from retrieval.index.exact_index import ExactIndex
from retrieval.index.milvus_index import MilvusIndex, MilvusTarget
from retrieval.index.usearch_index import UsearchIndex
from retrieval.store.artefacts import check_seal
from retrieval.store.cache import read_meta

BACKENDS = {cls.backend: cls for cls in (AnnoyIndex, UsearchIndex, ExactIndex)}  # each in a folder
CHOICES = ("auto", *BACKENDS, "milvus")  # milvus: a collection in a Milvus database (index/milvus_index.py)
ANNOY_MAX_ITEMS = 100_000


def choose_backend(name: str, n_items: int) -> str:
    """'auto' -> annoy up to ANNOY_MAX_ITEMS items, usearch beyond."""
    if name == "auto":
        return "annoy" if n_items <= ANNOY_MAX_ITEMS else "usearch"
    if name not in CHOICES:
        raise LookalikeError(f"index backend must be one of {', '.join(CHOICES)}, not {name!r}")
    return name


def open_index(folder, expected: dict, deep: bool | None = None, **options) -> Index | None:
    """The index in `folder` (None when there is none), by the backend its
    meta.json records; refused when built for other data (LookalikeError) or
    damaged (DamagedArtefact: a cache entry is rebuilt, a folder the user
    named is not). `deep`: hash every file however large (artefacts.check).
    A Milvus collection (`folder` a MilvusTarget) is opened by Milvus."""
    if isinstance(folder, MilvusTarget):
        return MilvusIndex.open(folder, expected)
    meta = read_meta(folder)
    if meta is None:
        return None
    check_seal(Path(folder) / "meta.json", meta)
    check_fingerprints(Path(folder), meta, expected)
    backend = BACKENDS.get(meta.get("backend"), AnnoyIndex)  # none recorded: AnnoyIndex refuses it
    return backend(folder, meta, deep, **options)


def build_index(folder, vectors, meta: dict, backend: str, **options) -> Index:
    """`folder`: where (a MilvusTarget for milvus); `options`: keys, metadata, ..."""
    if backend == "milvus":
        return MilvusIndex.build(folder, vectors, meta, **options)
    return BACKENDS[backend].build(folder, vectors, meta, **options)
