"""What an embedding costs: how fast it embeds images (timed from undecoded
catalogue items, as a query or an index build pays), how large its vectors
and its Annoy index are, and how close that index comes to exact search."""

import tempfile
import time
from pathlib import Path

import numpy as np

from retrieval.data.catalogue import Catalogue
from retrieval.extract.local import BATCH_SIZE
from retrieval.index.annoy_index import AnnoyIndex
from retrieval.report.embeddings import Embedding


def timing_sample(rows: np.ndarray, n: int) -> np.ndarray:
    """n rows spread evenly over the catalogue (every class, not the first few)."""
    return rows[np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int)]


def time_embedding(embedding: Embedding, catalogue: Catalogue, rows: np.ndarray) -> dict:
    """Decode and embed `rows` in batches of the feature extractor's size,
    after one untimed warm-up batch (lazy initialisation is not throughput)."""
    embedding.embed([catalogue.image(int(r)) for r in rows[:BATCH_SIZE]])
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH_SIZE):
        embedding.embed([catalogue.image(int(r)) for r in rows[start:start + BATCH_SIZE]])
    seconds = time.perf_counter() - started
    return {"timed_images": len(rows), "seconds": seconds, "images_per_second": len(rows) / seconds}


def index_cost(embedding: Embedding) -> dict:
    """Build the engine's Annoy index over the vectors (tuned until its
    recall@10 against exact search reaches the engine's target) in a
    scratch folder; its size, parameters and measured recall."""
    with tempfile.TemporaryDirectory(prefix="lookalike-report-") as scratch:
        index = AnnoyIndex.build(Path(scratch) / "index", embedding.vectors, {"embedding": embedding.name})
        m = index.meta
        size = (index.folder / "index.ann").stat().st_size
        index.annoy.unload()
        return {"dim": int(embedding.vectors.shape[1]), "vector_bytes": int(embedding.vectors.shape[0]
                * embedding.vectors.shape[1] * 4), "index_bytes": size,
                "n_trees": m["n_trees"], "search_k": m["search_k"], "annoy_recall_at_10": m["recall_at_10"],
                "index_build_seconds": m["build_seconds"]}
