"""Metric-learning losses by name, each with the miner it is usually paired
with (pytorch-metric-learning's composable losses and miners)."""

from collections.abc import Callable
from dataclasses import dataclass

from pytorch_metric_learning import losses, miners

from retrieval.errors import LookalikeError


@dataclass
class LossEntry:
    build: Callable          # (n_classes, dim) -> loss module
    miner: Callable | None   # () -> miner module
    about: str               # shown by `python -m finetune --help`


LOSSES = {
    "supcon": LossEntry(lambda n, d: losses.SupConLoss(temperature=0.1), None,
                        "supervised contrastive, temperature 0.1 (default: best on class-disjoint validation)"),
    "contrastive": LossEntry(lambda n, d: losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0),
                             lambda: miners.MultiSimilarityMiner(epsilon=0.1),
                             "the Siamese pair loss: same-class pairs pulled together, others pushed apart"),
    "triplet": LossEntry(lambda n, d: losses.TripletMarginLoss(margin=0.2),
                         lambda: miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard"),
                         "triplets (anchor, positive, negative), margin 0.2, semi-hard mining"),
    "multi-similarity": LossEntry(lambda n, d: losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5),
                                  lambda: miners.MultiSimilarityMiner(epsilon=0.1),
                                  "multi-similarity loss and miner"),
    "proxy-anchor": LossEntry(lambda n, d: losses.ProxyAnchorLoss(n, d, margin=0.1, alpha=32), None,
                              "one learned proxy per class"),
}


def describe_losses() -> str:
    return "; ".join(f"{name}: {entry.about}" for name, entry in LOSSES.items())


def create_loss(name: str, n_classes: int, dim: int):
    """Return (loss, miner or None)."""
    if name not in LOSSES:
        raise LookalikeError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}, or none")
    entry = LOSSES[name]
    return entry.build(n_classes, dim), entry.miner() if entry.miner else None
