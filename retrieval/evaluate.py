"""The metric-learning retrieval protocol: every image queries all the others
of the catalogue; Recall@k is whether any of the top k shares its class,
MAP@R is mean average precision over the R = (class size - 1) nearest."""

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import LookalikeError

RECALL_KS = (1, 2, 4, 8)
METRIC_KEYS = ("recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8", "map_at_r")  # what every report shows, in order
METRIC_TITLES = ("R@1", "R@2", "R@4", "R@8", "MAP@R")


def metrics_table(rows) -> str:
    """A markdown table of (embedding name, metrics) rows, for model cards and
    the app's metrics tab; a row without metrics is left out."""
    lines = ["| embedding | " + " | ".join(METRIC_TITLES) + " |", "|---" * (len(METRIC_TITLES) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in METRIC_KEYS) + " |" for name, m in rows if m]
    return "\n".join(lines)


def retrieval_metrics(embeddings: np.ndarray, labels, chunk=1024, progress=True) -> dict:
    """R@1/2/4/8 and MAP@R (fractions) over L2-normalised embeddings (in this
    protocol precision@1 is R@1).

    Images whose class has no other image are not queries (R = 0), as in
    pytorch-metric-learning's AccuracyCalculator.
    """
    emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    labels = torch.as_tensor(np.asarray(labels))
    n = len(labels)
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    r_all = counts[inverse] - 1
    max_k = int(min(max(int(r_all.max()), max(RECALL_KS)), n - 1))
    recall_hits = {k: 0 for k in RECALL_KS}
    ap_sum, n_queries = 0.0, 0
    starts = range(0, n, chunk)
    for start in tqdm(starts, desc="evaluate", unit="chunk", disable=not progress or len(starts) < 2):
        q = emb[start:start + chunk]
        sims = q @ emb.T
        sims[torch.arange(len(q)), torch.arange(start, start + len(q))] = -float("inf")  # not itself
        top = sims.topk(max_k, dim=1).indices
        same = labels[top] == labels[start:start + len(q), None]
        r = r_all[start:start + len(q)]
        valid = r > 0
        for k in RECALL_KS:
            recall_hits[k] += int(same[valid, :k].any(dim=1).sum())
        ranks = torch.arange(1, max_k + 1)
        within_r = ranks[None, :] <= r[:, None]
        rel = same & within_r
        precision_at_i = rel.cumsum(1) / ranks[None, :]
        ap = (precision_at_i * rel).sum(1) / r.clamp(min=1)
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
