"""Closed-form whitening of L2-normalised backbone features, fitted on the
training classes: PCA whitening (the issue's trivial baseline) or learned
whitening (whiten the within-class covariance, then PCA), which measured best
of the fixed projections on unseen classes (docs/finetune-research.md).

The linear algebra runs in numpy and scipy (OpenBLAS): torch's MKL eigh took
37 s for a 1792-d covariance on this machine's AMD CPU, numpy's 4.7 s (same
run). Learned whitening solves one generalised eigenproblem (the total
covariance against the within-class one) in float32: the same projection as
whitening then PCA in float64 (cosines within 3e-6; the shrinkage keeps both
covariances well conditioned), 3.9 s instead of 14.1 s for
efficientnet_lite0_lite2's 3632-d features (BENCHMARKS.md, session 10)."""

import numpy as np
import scipy.linalg
import torch

from retrieval.errors import LookalikeError
from retrieval.models.heads import EmbeddingHead

KINDS = ("learned", "pca", "none")
# Shrinkage of each covariance toward a scaled identity (a fraction of its
# trace). The within-class covariance of a few images per class is far from
# full rank and needs much: 0.5 is the recipe the research measured
# ("LW", docs/finetune-research.md). The total covariance PCA whitens is
# estimated from every image and only needs keeping invertible: 0.1.
WITHIN_CLASS_SHRINK, PCA_SHRINK = 0.5, 0.1


def fit_whitening(features: torch.Tensor, labels: torch.Tensor, dim: int, kind: str = "learned"):
    """Return (mean (D,), projection (dim, D)) so that x -> (x - mean) @ projection.T."""
    if kind not in KINDS or kind == "none":
        raise LookalikeError(f"unknown whitening {kind!r}; choose learned or pca")
    x = np.asarray(features, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if dim > x.shape[1]:
        raise LookalikeError(f"whitening dim {dim} exceeds the feature dim {x.shape[1]}")
    mean = x.mean(0)
    centred = x - mean
    if kind == "pca":
        values, vectors = _top_eigen(_shrunk(centred.T @ centred / (len(x) - 1), PCA_SHRINK), dim)
        return _tensors(mean, (vectors / np.sqrt(np.maximum(values, 1e-9))).T)
    classes, index = np.unique(np.asarray(labels), return_inverse=True)
    class_means = np.zeros((len(classes), x.shape[1]), dtype=x.dtype)
    np.add.at(class_means, index, x)
    class_means /= np.bincount(index, minlength=len(classes))[:, None]
    within = x - class_means[index]
    # the ridge keeps it invertible when no class varies (one image per class)
    within_cov = _shrunk(within.T @ within / len(x), WITHIN_CLASS_SHRINK) + 1e-9 * np.eye(x.shape[1], dtype=x.dtype)
    # v.T @ within_cov @ v = 1 for each eigenvector v: the within-class
    # covariance whitened, directions ranked by the total variance they keep
    values, vectors = scipy.linalg.eigh(centred.T @ centred / len(x), within_cov, driver="gvd")
    return _tensors(mean, vectors[:, np.argsort(values)[::-1][:dim]].T)


def _tensors(mean, projection):
    return torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(projection, dtype=torch.float32)


def _shrunk(cov: np.ndarray, shrink: float) -> np.ndarray:
    """Shrink toward a scaled identity: few images per class make the raw
    covariance singular."""
    return (1 - shrink) * cov + shrink * np.trace(cov) / len(cov) * np.eye(len(cov), dtype=cov.dtype)


def _top_eigen(matrix: np.ndarray, dim: int):
    values, vectors = scipy.linalg.eigh(matrix, driver="evd")  # float32: twice numpy's speed here
    order = np.argsort(values)[::-1][:dim]
    return values[order], vectors[:, order]


def fit_head_whitening(head: EmbeddingHead, train_views: torch.Tensor, train_labels: torch.Tensor, kind: str):
    """Fit a head's whitening part (if any) on training features (N, V, dim),
    every view of an image counted with its label."""
    if len(head.whitening):
        n_views = train_views.shape[1]
        mean, projection = fit_whitening(train_views.flatten(0, 1), train_labels.repeat_interleave(n_views),
                                         len(head.whitening), kind)
        head.whitening_mean.copy_(mean)
        head.whitening.copy_(projection)


def pca_whitening_head(views: torch.Tensor, dim: int) -> EmbeddingHead:
    """A head that only PCA-whitens (no labels needed): the baseline the
    fine-tuner and the report compare a trained head with."""
    head = EmbeddingHead(views.shape[2], 0, min(dim, views.shape[2]))
    fit_head_whitening(head, views, torch.zeros(len(views), dtype=torch.long), "pca")
    return head.eval()
