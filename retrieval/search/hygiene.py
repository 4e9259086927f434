"""Results a shopper trusts: a score floor, near-identical images collapsed
into the highest one, and some variety (maximal marginal relevance), all
applied to a pool of candidates a few times larger than k, so that
collapsing or re-ranking still leaves k results when there are k to give."""

from dataclasses import dataclass

import numpy as np

from retrieval.errors import LookalikeError

# Near-identical above this cosine, per backbone and embedding, chosen on
# altered copies of the car thumbnails (scripts/duplicates_eval.py,
# BENCHMARKS.md): efficientnet_lite0's pretrained features at 0.95 joined 79%
# of the copies to their originals at 97% precision; a fine-tuned head
# spreads a catalogue out, and at 0.75 joined 69% at 98%. The lite0 + lite2
# pair: 0.95 joined 84% at 97%, and through a head 0.78 joined 63% at 97%.
# Every backbone measures similarity on its own scale: one not measured
# collapses only identical images (IDENTICAL).
NEAR_IDENTICAL = {"efficientnet_lite0": {"pretrained": 0.95, "finetuned": 0.75},
                  "efficientnet_lite0_lite2": {"pretrained": 0.95, "finetuned": 0.78}}
IDENTICAL = 0.9999


def near_identical(backbone: str, finetuned: bool) -> float:
    """The cosine above which two results of this embedding are near-identical."""
    return NEAR_IDENTICAL.get(backbone, {}).get("finetuned" if finetuned else "pretrained", IDENTICAL)
POOL = 4  # candidates per result asked for when results may be collapsed or re-ranked


@dataclass(frozen=True)
class Hygiene:
    min_score: float | None = None   # drop results scoring below
    diversity: float = 0.0           # 0: by score alone; 1: most varied (MMR's lambda)
    dedup: bool = True               # collapse near-identical results

    def checked(self) -> "Hygiene":
        if self.min_score is not None and not -1.0 <= float(self.min_score) <= 1.0:
            raise LookalikeError(f"min score must be a cosine from -1 to 1, not {self.min_score!r}")
        if not 0.0 <= float(self.diversity) <= 1.0:
            raise LookalikeError(f"diversity must be from 0 (off) to 1 (most varied), not {self.diversity!r}")
        return self

    @property
    def pools(self) -> bool:
        return self.dedup or self.diversity > 0


def tidy(candidates: list, vectors: np.ndarray, k: int, hygiene: Hygiene, threshold: float) -> list:
    """The best k of `candidates` (Results in score order, `vectors` their
    normalised embeddings) after the score floor, collapsing and variety;
    a kept result lists the ids collapsed into it, ranks renumbered."""
    keep = [i for i, r in enumerate(candidates) if hygiene.min_score is None or r.score >= hygiene.min_score]
    if hygiene.dedup:
        keep = _collapse(candidates, vectors, keep, threshold)
    if hygiene.diversity > 0:
        keep = _mmr(candidates, vectors, keep, k, hygiene.diversity)
    chosen = [candidates[i] for i in keep[:k]]
    for rank, result in enumerate(chosen, 1):
        result.rank = rank
    return chosen


def _collapse(candidates, vectors, keep, threshold) -> list:
    kept = []
    for i in keep:
        twin = next((j for j in kept if float(vectors[i] @ vectors[j]) >= threshold), None)
        if twin is None:
            kept.append(i)
        else:
            candidates[twin].near_identical.append(candidates[i].id)
    return kept


def _mmr(candidates, vectors, keep, k, diversity) -> list:
    """Greedy maximal marginal relevance: next the candidate with the best
    (1 - diversity) * score - diversity * (its highest similarity to one chosen)."""
    chosen, left = [], list(keep)
    while left and len(chosen) < k:
        def value(i):
            redundancy = max((float(vectors[i] @ vectors[j]) for j in chosen), default=0.0)
            return (1 - diversity) * candidates[i].score - diversity * redundancy
        best = max(left, key=value)  # ties: the earlier (higher-scoring) one
        chosen.append(best)
        left.remove(best)
    return chosen
