"""A CNN as a sequence of stages whose chosen outputs are pooled, L2-normalised
and concatenated into one feature vector.

Pooling more than the last stage: mid-level maps (parts, textures) carry over
to unseen classes better than the last one alone (docs/finetune-research.md).
Stages also let the fine-tuner split a backbone into a frozen prefix, whose
outputs it caches once, and trainable last stages (`--unfreeze N`).

A second network may run beside the stages on the same input (`side`): its
features come first, and it stays frozen under `--unfreeze`. Two networks'
features together gained more on unseen classes than any single network,
scale or head did (docs/finetune-research.md, round 5).
"""

import torch
import torch.nn.functional as F
from torch import nn


class StagedNet(nn.Module):
    """stages[i] maps stage i-1's output to its own; the outputs of `taps` are
    pooled (GeM with exponent p; p=1 is average pooling); `side`, another
    StagedNet given the same input, puts its features before theirs."""

    def __init__(self, stages, taps, p: float = 3.0, side: "StagedNet | None" = None):
        super().__init__()
        self.stages, self.taps, self.p, self.side = nn.ModuleList(stages), tuple(taps), p, side

    @property
    def description(self) -> str:
        """What the pooling is, for cache fingerprints."""
        kind = "avg" if self.p == 1 else f"gem{self.p:g}"
        own = f"{kind}-stages{','.join(map(str, self.taps))}-of-{len(self.stages)}"
        return own if self.side is None else f"{self.side.description}+{own}"

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 1:
            return x.mean((2, 3))
        return x.clamp(min=1e-6).pow(self.p).mean((2, 3)).pow(1 / self.p)

    def run(self, x: torch.Tensor, start: int = 0, stop: int | None = None, pooled=()):
        """Stages [start, stop) on x (stage start's input); returns their output
        and the pooled taps so far (`pooled`: those of the stages before start,
        the side network's features first)."""
        pooled = list(pooled)
        if start == 0 and self.side is not None:
            pooled.append(self.side(x))
        for i in range(start, len(self.stages) if stop is None else stop):
            x = self.stages[i](x)
            if i in self.taps:
                pooled.append(F.normalize(self.pool(x), dim=1))
        return x, pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.run(x)[1], dim=1)

    def tap_maps(self, x: torch.Tensor) -> list:
        """The taps' output maps before pooling, the side network's first, in
        the order their pooled features are concatenated (explain.py)."""
        maps = self.side.tap_maps(x) if self.side is not None else []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.taps:
                maps.append(x)
        return maps

    def tail(self, start: int) -> "StagedNet":
        """Stages [start:] as a net of their own (the part `--unfreeze` trains);
        its forward takes stage start's input and the taps pooled before it."""
        if not 0 < start < len(self.stages):
            raise ValueError(f"start must be within 1..{len(self.stages) - 1}, not {start}")
        return StagedTail(list(self.stages)[start:], [t - start for t in self.taps if t >= start], self.p, start)

    def with_tail(self, tail: "StagedTail") -> "StagedNet":
        """This net with its last stages replaced by a (fine-tuned) tail."""
        return StagedNet([*list(self.stages)[:tail.start], *tail.stages], self.taps, self.p, self.side)


class StagedTail(StagedNet):
    """The last stages of a StagedNet, starting at stage `start` of the whole."""

    def __init__(self, stages, taps, p: float, start: int):
        super().__init__(stages, taps, p)
        self.start = start

    def forward(self, x: torch.Tensor, pooled_before: torch.Tensor) -> torch.Tensor:
        return torch.cat([pooled_before, *self.run(x)[1]], dim=1)
