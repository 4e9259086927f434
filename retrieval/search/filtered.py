"""Nearest neighbours among the items a filter allows, always min(k, allowed)
of them: an approximate index's candidates are never all that is searched.

The allowed set is computed once, vectorised over the metadata (where.py).
When it is small, the allowed vectors are searched exactly (a matrix
product); otherwise the index is asked for more candidates than k, in
proportion to how few items pass, more and more until every query has k
allowed ones, and exactly among the allowed vectors when even that falls
short (the index then reaches items too far away for its tuning)."""

import numpy as np

from retrieval.index.base import Index, padded
from retrieval.vectors import top_k

# Up to this many allowed items are searched exactly: gathering 10,000
# 1792-d vectors is ~70 MB and a few milliseconds of matrix product.
EXACT_UP_TO = 10_000
# The first candidate count is k / (allowed share) times this margin.
OVERSAMPLE = 2


def search_allowed(index: Index, queries: np.ndarray, k: int, allowed: np.ndarray | None, exact=False):
    """(keys (m, k), scores (m, k)), -1 / NaN padded, of each query's k
    nearest keys among `allowed` (sorted unique int64 keys; None: all)."""
    queries = np.atleast_2d(queries)
    n = len(index)
    if allowed is None or len(allowed) >= n:
        return index.search(queries, k, exact=exact)
    if len(allowed) <= max(EXACT_UP_TO, k) or exact:
        return _exact_among(index, queries, k, allowed)
    fetch = min(n, int(np.ceil(k * OVERSAMPLE * n / len(allowed))))
    while True:
        keys, scores = index.search(queries, fetch)
        keep = np.isin(keys, allowed) & (keys >= 0)
        if (keep.sum(axis=1) >= k).all():
            return _first_k(keys, scores, keep, k)
        if fetch >= n:
            return _exact_among(index, queries, k, allowed)
        fetch = min(n, fetch * 4)


def _exact_among(index: Index, queries, k, allowed):
    positions, scores = top_k(index.vectors(allowed), queries, k)
    return padded(allowed[positions], scores, k)


def _first_k(keys, scores, keep, k):
    """Each row's first k kept entries (they are in score order already)."""
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(keys, order, 1), np.take_along_axis(scores, order, 1)
