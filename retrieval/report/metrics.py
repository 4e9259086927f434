"""What the report measures of one embedding, beside evaluate.py's Recall@k
and MAP@R (the same protocol: every image queries all the others): P@1,
Recall@K for the curve, and leave-one-out kNN classification per class
(precision, recall, F1, their macro and weighted averages, the confusion
matrix). All computed from one table of each image's nearest neighbours."""

from dataclasses import dataclass

import numpy as np

from retrieval.evaluation.metrics import retrieval_metrics
from retrieval.vectors import l2_normalise, top_k

CURVE_KS = (1, 2, 4, 8, 16, 32)


@dataclass
class Neighbours:
    """Each image's nearest other images by cosine, nearest first."""

    rows: np.ndarray     # (N, k) positions
    scores: np.ndarray   # (N, k) cosine similarities


def nearest(embeddings: np.ndarray, k: int) -> Neighbours:
    """The k nearest other images of every image (itself left out)."""
    embeddings = l2_normalise(embeddings)
    return Neighbours(*top_k(embeddings, embeddings, k, exclude=np.arange(len(embeddings))))


def recall_curve(neighbours: Neighbours, labels, ks=CURVE_KS) -> dict:
    """{K: fraction of queries with a same-class image among their K nearest},
    over the images whose class has another image (as evaluate.py counts)."""
    labels = np.asarray(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    queries = counts[inverse] > 1
    same = labels[neighbours.rows] == labels[:, None]
    return {k: float(same[queries, :k].any(axis=1).mean()) for k in ks if k <= neighbours.rows.shape[1]}


def precision_at_1(neighbours: Neighbours, labels) -> float:
    """Share of images whose nearest other image shares their class."""
    labels = np.asarray(labels)
    return float((labels[neighbours.rows[:, 0]] == labels).mean())


def knn_predict(neighbours: Neighbours, labels, k: int) -> np.ndarray:
    """Leave-one-out kNN: each image takes the most common class among its k
    nearest others; a tie goes to the tied class met first (the nearest)."""
    labels = np.asarray(labels)
    votes = labels[neighbours.rows[:, :k]]
    predicted = np.empty(len(labels), dtype=labels.dtype)
    for i, row in enumerate(votes):
        classes, first, counts = np.unique(row, return_index=True, return_counts=True)
        predicted[i] = classes[np.lexsort((first, -counts))[0]]
    return predicted


def classification(labels, predicted, names) -> dict:
    """Accuracy, per-class precision / recall / F1 / support, and their macro
    and weighted averages (scikit-learn's definitions, 0 where undefined)."""
    from sklearn.metrics import precision_recall_fscore_support

    classes = np.unique(labels)
    per_class = precision_recall_fscore_support(labels, predicted, labels=classes, zero_division=0)
    result = {"accuracy": float(np.mean(np.asarray(labels) == predicted)),
              "per_class": [{"class": names[c], "precision": float(p), "recall": float(r), "f1": float(f),
                             "support": int(s)} for c, p, r, f, s in zip(classes, *per_class)]}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, predicted, labels=classes, average=average,
                                                     zero_division=0)
        result[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    return result


def confusion(labels, predicted) -> tuple:
    """(classes, confusion matrix: rows true class, columns predicted)."""
    from sklearn.metrics import confusion_matrix

    classes = np.unique(labels)
    return classes, confusion_matrix(labels, predicted, labels=classes)


def measure(embeddings: np.ndarray, labels, names, knn_k: int = 5) -> tuple:
    """(metrics dict, neighbours, kNN predictions) of one embedding."""
    labels = np.asarray(labels)
    neighbours = nearest(embeddings, max(max(CURVE_KS), knn_k))
    predicted = knn_predict(neighbours, labels, knn_k)
    metrics = retrieval_metrics(l2_normalise(embeddings), labels, progress=False)
    metrics.update(precision_at_1=precision_at_1(neighbours, labels),
                   recall_curve=recall_curve(neighbours, labels),
                   knn=dict(classification(labels, predicted, names), k=knn_k))
    return metrics, neighbours, predicted
