"""Lookalike retrieval: catalogues, backbones, cached embeddings, Annoy index, search, evaluation."""

from .engine import Recommender, Result
from .errors import LookalikeError

__all__ = ["Recommender", "Result", "LookalikeError"]
