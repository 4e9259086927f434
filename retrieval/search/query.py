"""What a user asks: liked examples (uploaded images, catalogue items), the
examples they dislike, a filter and how many results, checked at the edge,
and how the examples' embeddings become one query vector."""

from dataclasses import dataclass, field

import numpy as np

from retrieval.errors import LookalikeError
from retrieval.search.hygiene import Hygiene
from retrieval.search.limits import MAX_K, whole_number
from retrieval.vectors import l2_normalise

MAX_EXAMPLES = 20  # liked plus disliked: a query is a handful of them, not a catalogue
# How far a disliked example pushes the query away, measured (scripts/feedback_eval.py, BENCHMARKS.md): on
# unseen car classes one disliked result at 0.25 raised the same-class share of the top 10 from .221 to
# .247 and cut the results of its class from 1.78 to 0.63; at 1.0 the share fell to .098.
DISLIKE_WEIGHT = 0.25


@dataclass
class Query:
    """`images`: uploaded query images (bytes or PIL), `items`: catalogue
    item ids; both liked. `unlike_images`, `unlike_items`: disliked ones."""

    images: list = field(default_factory=list)
    items: list = field(default_factory=list)
    unlike_images: list = field(default_factory=list)
    unlike_items: list = field(default_factory=list)
    k: int = 10
    where: str | None = None
    hygiene: Hygiene = Hygiene()

    def checked(self) -> "Query":
        self.k = whole_number(self.k, "k", 1, MAX_K)
        self.hygiene = self.hygiene.checked()
        if not self.images and not self.items:
            raise LookalikeError("no query: upload, paste or snap an image, or name a catalogue item")
        if len(self.images) + len(self.items) + len(self.unlike_images) + len(self.unlike_items) > MAX_EXAMPLES:
            raise LookalikeError(f"at most {MAX_EXAMPLES} liked and disliked examples in one query")
        self.items = [str(i) for i in self.items]
        self.unlike_items = [str(i) for i in self.unlike_items]
        self.where = (self.where or "").strip() or None
        return self


def combine(liked: np.ndarray, disliked: np.ndarray | None = None, weight: float = DISLIKE_WEIGHT) -> np.ndarray:
    """One query vector from liked examples (m, d) and disliked ones (j, d):
    the normalised mean of the liked, minus `weight` times the mean of the
    disliked, normalised (Rocchio's relevance feedback)."""
    query = l2_normalise(l2_normalise(liked).mean(axis=0))
    if disliked is not None and len(disliked):
        query = query - weight * l2_normalise(l2_normalise(disliked).mean(axis=0))
    return l2_normalise(query)
