"""Annoy (angular, memory-mapped): the index of catalogue-sized collections.
Its trees and search_k are tuned at build time until recall@10 against exact
search reaches the target on catalogue items (themselves excluded); its
vectors are kept beside it for exact searches (and k beyond what it reaches).
Rebuilt from the stored vectors when the catalogue changes."""

import logging
import time

import numpy as np
from annoy import AnnoyIndex as Annoy

from retrieval.errors import DamagedArtefact
from retrieval.index import tuning
from retrieval.index.base import RECALL_K, FolderIndex, keys_of, padded, save
from retrieval.index.stored_vectors import StoredVectors, write_stored
from retrieval.vectors import l2_normalise, top_k

log = logging.getLogger(__name__)

AUDIT_QUERIES = 200
# Trees: more raise recall and cost memory and build time. Start at sqrt(n)
# within [10, 100] (4,052 cars met the target with 63), double until the
# target is met, and stop at 400, where the index is already ~4x the size of
# the vectors it indexes: past that exact search is the better tool.
MIN_TREES, START_TREES_CAP, MAX_TREES = 10, 100, 400


class AnnoyIndex(StoredVectors, FolderIndex):
    """Annoy's own item ids are positions (it allocates up to the largest
    id); keys.npy maps them to the index's keys."""

    backend = "annoy"
    files = ("index.ann", "embeddings.npy", "keys.npy")
    settings = {"n_trees": int, "search_k": int, "recall_at_10": (int, float)}

    def _load(self):
        self._load_stored()  # for exact search and k beyond the trees
        self.annoy = Annoy(self.meta["dim"], "angular")
        try:
            self.annoy.load(str(self.folder / "index.ann"))  # memory-mapped, once checked
        except OSError as e:
            raise DamagedArtefact(f"{self.folder / 'index.ann'}: damaged ({str(e).split('. ')[0]})") from e

    def summary(self) -> str:
        m = self.meta
        return f"annoy, {m['n_trees']} trees, search_k {m['search_k']}, recall@10 vs exact {m['recall_at_10']:.3f}"

    def search(self, queries, k, exact=False):
        """Exact when asked or when k covers every item: Annoy would return
        only the items its tuned search_k reaches, and exact costs no more
        than visiting them all."""
        queries = np.atleast_2d(queries)
        if exact or k >= len(self):
            return self.search_exact(queries, k)
        found = [self.annoy.get_nns_by_vector(q.tolist(), k, search_k=self.meta["search_k"], include_distances=True)
                 for q in queries]
        return padded([self.keys[np.asarray(rows, dtype=np.int64)] for rows, _ in found],
                      [1.0 - np.asarray(dist, dtype=np.float32) ** 2 / 2.0 for _, dist in found], k)

    @classmethod
    def build(cls, folder, vectors, meta, keys=None, metadata=None, seed=0) -> "AnnoyIndex":
        """Build, tune (n_trees, search_k) to the recall target, save atomically."""
        vectors = l2_normalise(vectors)
        n, dim = vectors.shape
        keys = keys_of(np.arange(n) if keys is None else keys, n)
        started = time.perf_counter()
        n_trees = first_trees(n)
        while True:
            annoy = _trees(vectors, n_trees, seed)
            search_k, recall, met = tune_search_k(annoy, vectors, n_trees, seed)
            if met or n_trees >= MAX_TREES:
                break
            n_trees *= 2
        if not met:
            log.warning("Annoy recall@10 only %.3f; use --exact for exact results", recall)
        meta = dict(meta, backend=cls.backend, dim=dim, n_items=n, n_trees=n_trees, search_k=search_k,
                    recall_at_10=round(recall, 4), audit_queries=min(AUDIT_QUERIES, n),
                    build_seconds=round(time.perf_counter() - started, 2))

        def write(tmp):
            annoy.save(str(tmp / "index.ann"))
            return ("index.ann", *write_stored(tmp, vectors, keys))

        return cls(folder, save(folder, meta, write))


def first_trees(n: int) -> int:
    """The tree count a build of n items tries first: sqrt(n) within [MIN_TREES, START_TREES_CAP]."""
    return max(MIN_TREES, min(START_TREES_CAP, int(np.sqrt(n))))


def _trees(vectors: np.ndarray, n_trees: int, seed: int) -> Annoy:
    annoy = Annoy(vectors.shape[1], "angular")
    annoy.set_seed(seed)
    for i, v in enumerate(vectors):
        annoy.add_item(i, v)
    annoy.build(n_trees, n_jobs=1)  # n_jobs=1: deterministic for a seed
    return annoy


def tune_search_k(annoy: Annoy, vectors: np.ndarray, n_trees: int, seed=0):
    """(search_k, recall@10, met) of the smallest search_k (doubling from
    n_trees * 10) that meets the target (tuning.meets_target) on catalogue
    items, themselves excluded (the self-hit is trivially found)."""
    n = len(vectors)
    k = min(RECALL_K, n - 1)
    if k < 1:  # one item: nothing to find but itself
        return n_trees, 1.0, True
    audit = np.random.default_rng(seed).choice(n, size=min(AUDIT_QUERIES, n), replace=False)
    truth, _ = top_k(vectors, vectors[audit], k, exclude=audit)
    start, limit = n_trees * k, max(n * n_trees, n_trees * k)
    ladder = [start * 2 ** i for i in range(64) if start * 2 ** (i - 1) < limit]

    def search(search_k):
        found = np.full((len(audit), k), -1)
        for i, row in enumerate(audit):
            kept = [r for r in annoy.get_nns_by_vector(vectors[row].tolist(), k + 1, search_k=search_k) if r != row]
            found[i, :len(kept[:k])] = kept[:k]
        return found

    return tuning.first_meeting(ladder, search, truth)
