"""Closed-form whitening of L2-normalised backbone features, fitted on the
training classes: PCA whitening (the issue's trivial baseline) or learned
whitening (whiten the within-class covariance, then PCA), which measured best
of the fixed projections on unseen classes (docs/finetune-research.md)."""

import torch
import torch.nn.functional as F

from retrieval.errors import LookalikeError

KINDS = ("learned", "pca", "none")


def fit_whitening(features: torch.Tensor, labels: torch.Tensor, dim: int, kind: str = "learned",
                  shrink: float = 0.5):
    """Return (mean (D,), projection (dim, D)) so that x -> (x - mean) @ projection.T."""
    if kind not in KINDS or kind == "none":
        raise LookalikeError(f"unknown whitening {kind!r}; choose learned or pca")
    x = F.normalize(features.double(), dim=1)
    if dim > x.shape[1]:
        raise LookalikeError(f"whitening dim {dim} exceeds the feature dim {x.shape[1]}")
    mean = x.mean(0)
    if kind == "pca":
        values, vectors = _top_eigen(_shrunk(torch.cov((x - mean).T), 0.1), dim)
        return mean.float(), (vectors / values.clamp(min=1e-9).sqrt()).T.float()
    classes, index = labels.unique(return_inverse=True)
    class_means = torch.zeros(len(classes), x.shape[1], dtype=x.dtype).index_add_(0, index, x)
    class_means /= torch.bincount(index, minlength=len(classes)).unsqueeze(1)
    within = x - class_means[index]
    values, vectors = torch.linalg.eigh(_shrunk(within.T @ within / len(x), shrink))
    inverse_sqrt = vectors @ torch.diag(values.clamp(min=1e-12).rsqrt()) @ vectors.T
    whitened = (x - mean) @ inverse_sqrt
    _, pcs = _top_eigen(whitened.T @ whitened / len(x), dim)
    return mean.float(), (inverse_sqrt @ pcs).T.float()


def _shrunk(cov: torch.Tensor, shrink: float) -> torch.Tensor:
    """Shrink toward a scaled identity: few images per class make the raw
    covariance singular."""
    return (1 - shrink) * cov + shrink * cov.diagonal().mean() * torch.eye(len(cov), dtype=cov.dtype)


def _top_eigen(matrix: torch.Tensor, dim: int):
    values, vectors = torch.linalg.eigh(matrix)
    order = values.argsort(descending=True)[:dim]
    return values[order], vectors[:, order]
