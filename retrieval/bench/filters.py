"""Latency of filtered search (`--where`) at several catalogue sizes and
selectivities: synthetic embeddings in the product's index, a metadata
column whose values select 50%, 5% and 0.1% of the items, and each query's
whole path: the filter's mask over the metadata (Arrow), the allowed keys,
and the search that fills k (search/filtered.py). Recall against exact
filtered search is reported beside it."""

import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from retrieval.bench.synthetic import Clustered, default_clusters
from retrieval.evaluation.table import table
from retrieval.index.backends import build_index, choose_backend
from retrieval.search.filtered import search_allowed
from retrieval.search.where import parse_where
from retrieval.vectors import recall_at_k, top_k

SELECTIVITIES = (0.5, 0.05, 0.001)
DIM, K, QUERIES = 256, 10, 100


def filter_benchmark(sizes=(4_000, 100_000), dim=DIM, log=print) -> list:
    """[{items, backend, selectivity, allowed, p50_ms, p95_ms, recall_at_10}]."""
    rows = []
    for n in sizes:
        data = Clustered(dim, default_clusters(n), seed=0)
        vectors, queries = data.points(n), data.queries(QUERIES)
        # `bucket` takes 1,000 values: bucket < 500 keeps 50%, < 50 keeps 5%, == 0 keeps 0.1%
        table = pa.table({"bucket": pa.array(np.random.default_rng(1).integers(0, 1000, n))})
        backend = choose_backend("auto", n)
        with tempfile.TemporaryDirectory(prefix="lookalike-filters-") as scratch:
            started = time.perf_counter()
            index = build_index(Path(scratch) / "ix", vectors, {}, backend)
            log(f"filters: {backend} over {n:,} items built in {time.perf_counter() - started:.1f}s")
            for share, text in zip(SELECTIVITIES, ("bucket < 500", "bucket < 50", "bucket == 0")):
                rows.append(_measure(index, vectors, queries, table, text, share, backend))
                log(f"filters: {rows[-1]}")
    return rows


def _measure(index, vectors, queries, table, text, share, backend) -> dict:
    where = parse_where(text, {"bucket": "integer"})
    times, found = [], []
    for query in queries:
        started = time.perf_counter()
        mask = where.mask(table)
        allowed = np.flatnonzero(mask).astype(np.int64)  # keys are the vectors' positions here
        keys, _ = search_allowed(index, query[None], K, allowed)
        times.append(time.perf_counter() - started)
        found.append(keys[0])
    mask = where.mask(table)
    allowed = np.flatnonzero(mask)
    truth, _ = top_k(vectors[allowed], queries, K)
    ms = np.asarray(times) * 1000
    return {"items": len(vectors), "backend": backend, "selectivity": share, "allowed": int(len(allowed)),
            "p50_ms": round(float(np.median(ms)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "recall_at_10": round(recall_at_k(found, allowed[truth]), 4)}


def markdown(rows: list) -> str:
    return table(["items", "backend", "filter keeps", "allowed", "p50 ms", "p95 ms", "recall@10 vs exact filtered"],
                 [[f"{r['items']:,}", r["backend"], f"{r['selectivity']:.1%}", f"{r['allowed']:,}", f"{r['p50_ms']}",
                   f"{r['p95_ms']}", f"{r['recall_at_10']:.3f}"] for r in rows], align="rlrrrrr")
