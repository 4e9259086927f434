"""The fine-tuned embedding head: the module the fine-tuner trains and the
embedder applies to each view's backbone features."""

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.errors import LookalikeError
from retrieval.models.stages import StagedTail


class EmbeddingHead(nn.Module):
    """L2-normalised features -> concat[learned projection, fixed whitening],
    each part L2-normalised. Either part may be absent (dim 0).

    The concatenation is what the research measured to help on unseen classes:
    a trained head alone scores below plain whitening, the pair above both
    (docs/finetune-research.md).
    """

    def __init__(self, in_dim: int, projection_dim: int, whitening_dim: int, tail: StagedTail | None = None):
        super().__init__()
        if projection_dim <= 0 and whitening_dim <= 0:
            raise LookalikeError("a head needs a projection or a whitening part (both dims are 0)")
        # the backbone's last stages when `--unfreeze` trained them; the backbone
        # runs them (Backbone.with_tail), so forward() starts from pooled features
        self.tail = tail
        self.projection = nn.Linear(in_dim, projection_dim) if projection_dim > 0 else None
        self.register_buffer("whitening_mean", torch.zeros(in_dim if whitening_dim > 0 else 0))
        self.register_buffer("whitening", torch.zeros(max(whitening_dim, 0), in_dim))

    def architecture(self) -> dict:
        """What rebuilds this head before its weights are loaded (run configs)."""
        return {"in_dim": self.whitening.shape[1], "tail_start": self.tail.start if self.tail else None,
                "projection_dim": self.projection.out_features if self.projection else 0,
                "whitening_dim": len(self.whitening)}

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The trainable part alone (what the metric-learning loss sees)."""
        return F.normalize(self.projection(F.normalize(features, dim=-1)), dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.normalize(features, dim=-1)
        parts = []
        if self.projection is not None:
            parts.append(F.normalize(self.projection(x), dim=-1))
        if len(self.whitening):
            parts.append(F.normalize((x - self.whitening_mean) @ self.whitening.T, dim=-1))
        return torch.cat(parts, dim=-1)
