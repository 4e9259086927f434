"""What the head trains on. By default, cached pooled backbone features of
each image's views (the backbone stays frozen, so an epoch takes a second).
With `--unfreeze N`, the cached inputs of the backbone's last N stages, run
through trainable copies of those stages: real fine-tuning of part of the
network, with no image decoded or early stage run twice."""

from functools import cached_property

import numpy as np
import torch

from retrieval.models.stages import StagedTail


class FrozenFeatures:
    """Pooled features (N, V views, dim) of a frozen backbone."""

    tail = None

    def __init__(self, views):
        self.views = torch.as_tensor(np.asarray(views, dtype=np.float32))

    @property
    def dim(self) -> int:
        return self.views.shape[2]

    @property
    def n_views(self) -> int:
        return self.views.shape[1]

    def batch(self, rows, view, device) -> torch.Tensor:
        """Features of one view per row (for a training step)."""
        return self.views[rows, view].to(device)

    def all_views(self, rows, device) -> torch.Tensor:
        """Features of every view of `rows`, (len, V, dim), on the CPU."""
        return self.views[rows]


class StageInputs:
    """Input maps of the backbone's stages [tail.start:] and the taps pooled
    before them (N, V views, ...), run through the trainable `tail`."""

    def __init__(self, maps: np.ndarray, pooled: np.ndarray, tail: StagedTail, chunk: int = 64):
        self.maps, self.pooled, self.tail, self.chunk = maps, torch.as_tensor(pooled), tail, chunk

    @property
    def n_views(self) -> int:
        return self.maps.shape[1]

    @cached_property
    def dim(self) -> int:
        """The features' width: one pass of the tail over one image (the
        stages' weights change in training, their output width does not)."""
        with torch.no_grad():
            return self._run(np.zeros(1, dtype=np.int64), torch.zeros(1, dtype=torch.long), "cpu").shape[1]

    def _run(self, rows, view, device):
        rows, view = torch.as_tensor(rows), torch.as_tensor(view)
        maps = torch.from_numpy(np.asarray(self.maps[rows.numpy(), view.numpy()], dtype=np.float32))
        self.tail.to(device)
        return self.tail(maps.to(device).contiguous(memory_format=torch.channels_last),
                         self.pooled[rows, view].to(device))

    def batch(self, rows, view, device) -> torch.Tensor:
        return self._run(rows, view, device)

    @torch.no_grad()
    def all_views(self, rows, device) -> torch.Tensor:
        rows = torch.as_tensor(rows)
        out = []
        for start in range(0, len(rows), self.chunk):
            chunk = rows[start:start + self.chunk]
            views = [self._run(chunk, torch.full_like(chunk, v), device) for v in range(self.n_views)]
            out.append(torch.stack(views, dim=1).float().cpu())
        return torch.cat(out)
