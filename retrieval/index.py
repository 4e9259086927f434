"""Nearest-neighbour index: Annoy (angular, memory-mapped) tuned at build time
until its recall@10 against exact search reaches a target, plus the exact
brute-force search that audits it."""

import logging
import time
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex

from .artefacts import check, record
from .atomic import atomic_dir, write_json
from .cache import read_meta
from .errors import DamagedArtefact, LookalikeError

log = logging.getLogger(__name__)

TARGET_RECALL = 0.99
RECALL_K = 10
AUDIT_QUERIES = 200
# Trees: more raise recall and cost memory and build time. Start at sqrt(n)
# within [10, 100] (4,052 cars met the target with 63), double until the
# target is met, and stop at 400, where the index is already ~4x the size of
# the vectors it indexes: past that --exact is the better tool.
MIN_TREES, START_TREES_CAP, MAX_TREES = 10, 100, 400
FILES = ("index.ann", "embeddings.npy")
# What an index and its callers read from its meta.json, and their types.
REQUIRED_META = {"dim": int, "n_items": int, "n_trees": int, "search_k": int, "recall_at_10": (int, float),
                 "files": dict}


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def exact_search(embeddings: np.ndarray, queries: np.ndarray, k: int):
    """Top-k rows by cosine similarity (inputs L2-normalised): (rows, scores)."""
    k = min(k, len(embeddings))
    scores = queries @ embeddings.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, 1).argsort(axis=1)[:, ::-1]
    top = np.take_along_axis(top, order, 1)
    return top, np.take_along_axis(scores, top, 1)


class Index:
    """An Annoy index over L2-normalised embeddings with the parameters that
    met the recall target, loaded memory-mapped from its folder."""

    def __init__(self, folder: Path, meta: dict, deep: bool | None = None):
        """Everything is checked before Annoy sees its file: Annoy memory-maps
        it blindly, and a truncated one crashes the process on a query."""
        self.folder, self.meta = Path(folder), meta
        _check_meta(self.folder, meta)
        check(self.folder, meta["files"], deep=deep, required=FILES)
        self.embeddings = _load_embeddings(self.folder, meta)  # for --exact, audits and k >= n
        self.annoy = _load_annoy(self.folder, meta)
        self.search_k = meta["search_k"]

    def describe(self) -> str:
        m = self.meta
        return f"annoy, {m['n_trees']} trees, search_k {m['search_k']}, recall@10 vs exact {m['recall_at_10']:.3f}"

    def search(self, query: np.ndarray, k: int, exact=False):
        """(rows, cosine scores) of the k nearest items to one normalised query.
        Exact when k covers every item: Annoy would return only the items its
        tuned search_k reaches, and exact costs no more than visiting them all."""
        if exact or k >= len(self.embeddings):
            rows, scores = exact_search(self.embeddings, query[None, :], k)
            return rows[0], scores[0]
        rows, dist = self.annoy.get_nns_by_vector(query.tolist(), k, search_k=self.search_k,
                                                  include_distances=True)
        return np.asarray(rows), 1.0 - np.asarray(dist, dtype=np.float32) ** 2 / 2.0


def _check_meta(folder: Path, meta: dict):
    """The keys an index needs, of the types it needs: a damaged or older
    meta.json is a DamagedArtefact, not a KeyError or TypeError later."""
    wrong = [key for key, types in REQUIRED_META.items()
             if not isinstance(meta.get(key), types) or isinstance(meta.get(key), bool)]
    if wrong:
        raise DamagedArtefact(f"{folder / 'meta.json'}: damaged or written by an older Lookalike "
                              f"(missing or invalid: {', '.join(wrong)})")


def _load_embeddings(folder: Path, meta: dict) -> np.ndarray:
    """embeddings.npy, memory-mapped, with the shape and dtype meta.json records."""
    path = folder / "embeddings.npy"
    try:
        embeddings = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise DamagedArtefact(f"{path}: damaged ({e})") from e
    written = (meta["n_items"], meta["dim"])
    if embeddings.shape != written or embeddings.dtype != np.float32:
        raise DamagedArtefact(f"{path}: damaged (holds {embeddings.shape} {embeddings.dtype}, "
                              f"meta.json records {written} float32)")
    return embeddings


def _load_annoy(folder: Path, meta: dict) -> AnnoyIndex:
    """index.ann, memory-mapped (only once `check` has passed it)."""
    annoy = AnnoyIndex(meta["dim"], "angular")
    try:
        annoy.load(str(folder / "index.ann"))
    except OSError as e:
        raise DamagedArtefact(f"{folder / 'index.ann'}: damaged ({str(e).split('. ')[0]})") from e
    return annoy


def open_index(folder, expected: dict, deep: bool | None = None) -> Index | None:
    """Load the index in `folder` if it exists (None when it doesn't); refuse
    one built for other data (LookalikeError) and a damaged one
    (DamagedArtefact: a cache entry is rebuilt, a folder the user named is not).

    `expected` holds the fingerprints the caller needs (catalogue, features,
    embedder); `deep`: hash every file however large (artefacts.check).
    """
    meta = read_meta(folder)
    if meta is None:
        return None
    _check_fingerprints(Path(folder), meta, expected)
    return Index(folder, meta, deep)


def _check_fingerprints(folder: Path, meta: dict, expected: dict):
    """A fingerprint missing from meta.json is damage; one that differs means
    the index was built for another catalogue or model."""
    missing = [key for key in expected if key not in meta]
    if missing:
        raise DamagedArtefact(f"{folder / 'meta.json'}: damaged or written by an older Lookalike "
                              f"(missing: {', '.join(missing)})")
    wrong = {k: (meta[k], v) for k, v in expected.items() if meta[k] != v}
    if wrong:
        detail = "; ".join(f"{k}: index has {a!r}, wanted {b!r}" for k, (a, b) in wrong.items())
        raise LookalikeError(
            f"index in {folder} was built for another catalogue or model ({detail}). "
            "Rebuild it with `python -m retrieval index` for this catalogue/backbone/head, "
            "or point --index elsewhere")


def build_index(folder, embeddings: np.ndarray, meta: dict, seed=0) -> Index:
    """Build, tune (n_trees, search_k) to the recall target, save atomically."""
    embeddings = l2_normalise(embeddings)
    n, dim = embeddings.shape
    rng = np.random.default_rng(seed)
    audit_rows = rng.choice(n, size=min(AUDIT_QUERIES, n), replace=False)
    k = min(RECALL_K, n - 1)
    # each audit item's own neighbours, itself excluded: the self-hit is trivially found
    truth, _ = exact_search(embeddings, embeddings[audit_rows], k + 1)
    truth = [[r for r in rows if r != row][:k] for row, rows in zip(audit_rows, truth.tolist())]
    started = time.perf_counter()
    n_trees = max(MIN_TREES, min(START_TREES_CAP, int(np.sqrt(n))))
    while True:
        annoy = AnnoyIndex(dim, "angular")
        annoy.set_seed(seed)
        for i, v in enumerate(embeddings):
            annoy.add_item(i, v)
        annoy.build(n_trees, n_jobs=1)  # n_jobs=1: deterministic for a seed
        search_k, recall = _tune_search_k(annoy, embeddings, audit_rows, truth, n_trees, k)
        if recall >= TARGET_RECALL or n_trees >= MAX_TREES:
            break
        n_trees *= 2
    build_seconds = time.perf_counter() - started
    meta = dict(meta, dim=dim, n_items=n, n_trees=n_trees, search_k=search_k,
                recall_at_10=round(recall, 4), audit_queries=len(audit_rows),
                build_seconds=round(build_seconds, 2))
    if recall < TARGET_RECALL:
        log.warning("Annoy recall@10 only %.3f; use --exact for exact results", recall)
    with atomic_dir(folder) as tmp:
        annoy.save(str(tmp / "index.ann"))
        np.save(tmp / "embeddings.npy", embeddings)
        meta = dict(meta, files=record(tmp, FILES))
        write_json(tmp / "meta.json", meta)
    return Index(folder, meta)


def _tune_search_k(annoy, embeddings, audit_rows, truth, n_trees, k):
    """Smallest search_k (doubling) whose recall@k (self excluded) reaches the target."""
    search_k = n_trees * k
    limit = max(len(embeddings) * n_trees, search_k)
    while True:
        recall = _recall(annoy, embeddings, audit_rows, truth, search_k, k)
        if recall >= TARGET_RECALL or search_k >= limit:
            return search_k, recall
        search_k *= 2


def _recall(annoy, embeddings, audit_rows, truth, search_k, k) -> float:
    hits = 0
    for row, true_rows in zip(audit_rows, truth):
        found = annoy.get_nns_by_vector(embeddings[row].tolist(), k + 1, search_k=search_k)
        hits += len(set(found) & set(true_rows))
    return hits / (len(audit_rows) * k)
