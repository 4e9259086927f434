"""Vector math every layer shares: L2 normalisation and the one exact kNN.
Metrics, exact search, index audits and the report all rank through
`top_k`, so "nearest" means the same everywhere (numpy only: no index
library or torch is imported with it)."""

import numpy as np

# query x item scores computed at a time (256 MB of float32): bounds memory
# at a million items while keeping each matrix product large
SCORES_AT_ONCE = 64 * 2**20


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def top_k(items: np.ndarray, queries: np.ndarray, k: int, exclude=None):
    """(rows, scores) of each query's k highest inner products with `items`,
    best first, as (m, k) int64 and float32 arrays (inputs L2-normalised, so
    scores are cosines). `exclude`: per query, one item row left out (the
    query itself when items query each other; -1 for none), so k is at most
    n - 1 then. Computed in chunks of queries: memory stays bounded."""
    items = np.asarray(items, dtype=np.float32)
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    k = max(0, min(k, len(items) - (exclude is not None)))
    rows = np.empty((len(queries), k), dtype=np.int64)
    scores = np.empty((len(queries), k), dtype=np.float32)
    step = max(1, SCORES_AT_ONCE // max(len(items), 1))
    for start in range(0, len(queries), step):
        stop = min(start + step, len(queries))
        block = queries[start:stop] @ items.T
        if exclude is not None:
            skip = np.asarray(exclude[start:stop])
            has = skip >= 0
            block[np.flatnonzero(has), skip[has]] = -np.inf
        if k == 0:
            continue
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(block, top, 1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        rows[start:stop] = np.take_along_axis(top, order, 1)
        scores[start:stop] = np.take_along_axis(top_scores, order, 1)
    return rows, scores


def hits(found, truth) -> np.ndarray:
    """How many of each query's true neighbours are among its found ones
    (rows per query, any order; -1 padding never counts)."""
    return np.array([len(set(np.asarray(f).tolist()) & set(np.asarray(t).tolist()) - {-1})
                     for f, t in zip(found, truth)], dtype=np.int64)


def per_query_recall(found, truth) -> np.ndarray:
    """Share of each query's true neighbours among its found ones."""
    return hits(found, truth) / np.maximum([len(t) for t in truth], 1)


def recall_at_k(found, truth) -> float:
    """Share of the true top-k found, over all queries (0 for none)."""
    return int(hits(found, truth).sum()) / max(sum(len(t) for t in truth), 1)
