"""The metric-learning retrieval protocol: every image queries all the others
of the catalogue; Recall@k is whether any of the top k shares its class,
MAP@R is mean average precision over the R = (class size - 1) nearest."""

import numpy as np
from tqdm.auto import tqdm

from retrieval.errors import LookalikeError
from retrieval.vectors import top_k

RECALL_KS = (1, 2, 4, 8)


def retrieval_metrics(embeddings: np.ndarray, labels, chunk=1024, progress=True) -> dict:
    """R@1/2/4/8 and MAP@R (fractions) over L2-normalised embeddings (in this
    protocol precision@1 is R@1).

    Images whose class has no other image are not queries (R = 0), as in
    pytorch-metric-learning's AccuracyCalculator.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels)
    n = len(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    r_all = counts[inverse] - 1
    max_k = int(min(max(int(r_all.max()), max(RECALL_KS)), n - 1))
    recall_hits = dict.fromkeys(RECALL_KS, 0)
    ap_sum, n_queries = 0.0, 0
    ranks = np.arange(1, max_k + 1)
    starts = range(0, n, chunk)
    for start in tqdm(starts, desc="evaluate", unit="chunk", disable=not progress or len(starts) < 2):
        stop = min(start + chunk, n)
        top, _ = top_k(embeddings, embeddings[start:stop], max_k, exclude=np.arange(start, stop))  # not itself
        same = labels[top] == labels[start:stop, None]
        r = r_all[start:stop]
        valid = r > 0
        for k in RECALL_KS:
            recall_hits[k] += int(same[valid, :k].any(axis=1).sum())
        relevant = same & (ranks[None, :] <= r[:, None])
        precision_at_i = relevant.cumsum(1) / ranks[None, :]
        ap = (precision_at_i * relevant).sum(1) / np.maximum(r, 1)
        ap_sum += float(ap[valid].sum())
        n_queries += int(valid.sum())
    if n_queries == 0:
        raise LookalikeError("no class has two or more images, so no image has another of its class to "
                             "find: nothing to evaluate")
    metrics = {f"recall_at_{k}": recall_hits[k] / n_queries for k in RECALL_KS}
    metrics["map_at_r"] = ap_sum / n_queries
    metrics["n_images"] = n
    metrics["n_classes"] = int(len(counts))
    return metrics
