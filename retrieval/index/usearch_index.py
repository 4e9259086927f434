"""USearch (HNSW graph over L2-normalised vectors, inner product = cosine):
the index of large catalogues. At a million 128-d vectors it reaches recall@10
0.99 far faster per query than Annoy (BENCHMARKS.md, "Index at scale").

Served memory-mapped: `open_index` views index.usearch (graph and vectors)
from disk, so opening costs no reading and the page cache holds what queries
touch. A view is read-only (USearch crashes on a write to one): `add` and
`remove` load a writable copy into memory, apply the change, write a new
folder atomically and view that. A process already viewing the old folder
keeps serving the old version until it reopens.

usearch is imported when an index is built or opened, not with this module:
imported before torch, it makes torch's JIT tracing (what OpenVINO's
conversion runs) some 50x slower in that process (seen here: 2 minutes to
convert the tiny test network); every command makes its backbone first."""

import logging
import time

import numpy as np

from retrieval.errors import DamagedArtefact
from retrieval.index import tuning
from retrieval.index.base import RECALL_K, FolderIndex, keys_of, save
from retrieval.vectors import l2_normalise, top_k

log = logging.getLogger(__name__)

FILE = "index.usearch"
# Graph degree and build effort, tried in order until the audit meets the
# target: the first met it on every data set measured (4k to 1M clustered
# 128-d vectors); each later one doubles memory for links and build time.
BUILD_LADDER = ((16, 64), (32, 128), (64, 256))  # (connectivity, expansion_add)
# Search effort tried (at each rung) from the cheapest up.
SEARCH_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
# Held-out audit queries (at most a tenth of the items): Annoy's 200 were too
# few here: a 200-query audit passed at 0.990 where 1,000 fresh queries then
# measured 0.985. 1,000 cost ~10 s of exact search at a million items.
AUDIT_QUERIES = 1_000


class UsearchIndex(FolderIndex):
    """Checked against its record before USearch reads a byte of it (a
    damaged file can crash USearch); `view`: memory-mapped, else loaded."""

    backend = "usearch"
    files = (FILE,)
    settings = {"connectivity": int, "expansion_add": int, "expansion_search": int, "recall_at_10": (int, float)}

    def __init__(self, folder, meta: dict, deep: bool | None = None, view=True):
        self.view = view
        super().__init__(folder, meta, deep)

    def _load(self):
        self.usearch = _restore(self.folder / FILE, self.meta, self.view)

    def summary(self) -> str:
        m = self.meta
        return (f"usearch, connectivity {m['connectivity']}, expansion_search {m['expansion_search']}, "
                f"recall@10 vs exact {m['recall_at_10']:.3f}")

    def search(self, queries, k, exact=False, threads=1):
        """Exact when asked or when k covers every item."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        matches = self.usearch.search(queries, k, threads=threads, exact=exact or k >= len(self))
        # one query gives its found items only, several give k columns and counts
        counts = np.atleast_1d(getattr(matches, "counts", len(matches.keys)))
        keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(queries), -1)
        distances = np.asarray(matches.distances, dtype=np.float32).reshape(len(queries), -1)
        found = np.arange(keys.shape[1])[None, :] < counts[:, None]
        rows, scores = np.full((len(queries), k), -1), np.full((len(queries), k), np.nan, dtype=np.float32)
        rows[:, :keys.shape[1]] = np.where(found, keys, -1)
        scores[:, :keys.shape[1]] = np.where(found, 1.0 - distances, np.nan)
        return rows, scores

    def all_keys(self) -> np.ndarray:
        return np.asarray(self.usearch.keys, dtype=np.int64)

    def has(self, keys) -> np.ndarray:
        return np.asarray(self.usearch.contains(keys_of(keys).astype(np.uint64)), dtype=bool)

    def vectors(self, keys) -> np.ndarray:
        keys = keys_of(keys).astype(np.uint64)
        found = np.asarray(self.usearch.contains(keys), dtype=bool)
        if not found.all():
            raise KeyError(f"keys not in the index: {keys[~found][:5].tolist()}")
        return np.atleast_2d(np.asarray(self.usearch.get(keys), dtype=np.float32))

    @property
    def grows_in_place(self) -> bool:
        return True

    def update(self, vectors, keys, removed, meta: dict):
        """Add items (normalised here) under new keys and remove others, as
        one change saved atomically: a removed item never comes back."""
        vectors = l2_normalise(np.atleast_2d(vectors)).reshape(-1, self.meta["dim"]) if len(keys) else \
            np.zeros((0, self.meta["dim"]), dtype=np.float32)
        keys, removed = keys_of(keys, len(vectors)), keys_of(removed)
        self.check_change(keys, removed)
        keys, removed = keys.astype(np.uint64), removed.astype(np.uint64)
        writable = _usearch_index().restore(str(self.folder / FILE), view=False) if self.view else self.usearch
        writable.expansion_search = self.meta["expansion_search"]
        if len(removed):
            writable.remove(removed)
        if len(keys):
            writable.add(keys, vectors, threads=0)
        self.meta = _save(self.folder, writable, dict(self.meta, **meta, n_items=len(writable)))
        self.usearch = _restore(self.folder / FILE, self.meta, view=True) if self.view else writable

    @classmethod
    def build(cls, folder, vectors, meta, keys=None, metadata=None, threads=0, seed=0) -> "UsearchIndex":
        """Raise graph degree and search effort until recall@10 against exact
        search reaches the target on held-out items (added last), save
        atomically, open viewed."""
        vectors = l2_normalise(vectors)
        n, dim = vectors.shape
        keys = keys_of(np.arange(n) if keys is None else keys, n).astype(np.uint64)
        audit, rest, truth = _holdout(n, vectors, seed)
        started = time.perf_counter()
        for connectivity, expansion_add in BUILD_LADDER:
            index = _usearch_index()(ndim=dim, metric="ip", dtype="f32", connectivity=connectivity,
                                     expansion_add=expansion_add)
            index.add(keys[rest], vectors[rest], threads=threads)
            expansion_search, recall, met = _tune_search(index, vectors[audit], keys[truth])
            if met:
                break
        if not met:
            log.warning("USearch recall@10 only %.3f; use exact search for exact results", recall)
        if len(audit):
            index.add(keys[audit], vectors[audit], threads=threads)
        index.expansion_search = expansion_search
        from usearch import __version__ as usearch_version

        meta = dict(meta or {}, backend=cls.backend, usearch_version=usearch_version, dim=dim, n_items=n,
                    connectivity=connectivity, expansion_add=expansion_add, expansion_search=expansion_search,
                    recall_at_10=round(recall, 4), audit_queries=len(audit),
                    build_seconds=round(time.perf_counter() - started, 2))
        return cls(folder, _save(folder, index, meta))


def _usearch_index():
    """usearch's Index class, imported on first use (see the module docstring)."""
    from usearch.index import Index

    return Index


def _restore(path, meta: dict, view: bool):
    """View (or load) the file, and refuse one that disagrees with meta.json."""
    try:
        index = _usearch_index().restore(str(path), view=view)
    except (RuntimeError, ValueError) as e:
        raise DamagedArtefact(f"{path}: damaged ({e})") from e
    if index is None or index.ndim != meta["dim"] or len(index) != meta["n_items"]:
        held = "nothing" if index is None else f"{len(index)} items of dimension {index.ndim}"
        raise DamagedArtefact(f"{path}: damaged (holds {held}, meta.json records "
                              f"{meta['n_items']} of dimension {meta['dim']})")
    index.expansion_search = meta["expansion_search"]
    return index


def _holdout(n, vectors, seed):
    """Audit rows held out of the graph until tuning is done, the other rows,
    and each audit row's exact top-k among those: the audit queries are then
    unseen, as a user's are (an indexed item finds its own neighbourhood more
    easily, and tuned on those, fresh queries fell to recall .978)."""
    rng = np.random.default_rng(seed)
    audit = np.sort(rng.choice(n, size=min(AUDIT_QUERIES, n // 10), replace=False))
    rest = np.setdiff1d(np.arange(n), audit)
    top, _ = top_k(vectors[rest], vectors[audit], min(RECALL_K, len(rest)))
    return audit, rest, rest[top]


def _tune_search(index, queries, truth_keys):
    """(expansion_search, recall, met) on the search ladder (tuning.first_meeting)."""
    if not len(queries):  # under 10 items: nothing to hold out, and search is all but exact
        return SEARCH_LADDER[0], 1.0, True

    def search(expansion_search):
        index.expansion_search = expansion_search
        return np.asarray(index.search(queries, truth_keys.shape[1], threads=0).keys).reshape(len(queries), -1)

    return tuning.first_meeting(SEARCH_LADDER, search, truth_keys)


def _save(folder, index, meta: dict) -> dict:
    def write(tmp):
        index.save(str(tmp / FILE))
        return [FILE]

    return save(folder, meta, write)
