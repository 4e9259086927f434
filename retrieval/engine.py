"""The one engine behind the CLI, the app and the tests: a Recommender answers
queries for one (catalogue, backbone, head) triple."""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .backbones import Backbone, create_backbone
from .cache import cache_root, entry_dir
from .catalogues import Catalogue, load_catalogue
from .errors import LookalikeError
from .features import catalogue_features, embed_images, features_fingerprint
from .heads import embed_views, load_head
from .fingerprint import digest
from .images import open_image
from .index import Index, build_index, open_index

log = logging.getLogger(__name__)


@dataclass
class Result:
    """One recommendation, the same shape everywhere (CLI, API, UI captions)."""

    rank: int
    id: str
    label: str
    score: float
    row: int  # catalogue row, to fetch the image

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("row")
        return d


def embedding_name(backbone: str, head=None) -> str:
    """What results are labelled with: the backbone, plus the head if any."""
    return f"{backbone} + {head.name}" if head else backbone


def head_mismatch(head, backbone: str, weights: str | None = None) -> str:
    """Why `head` can't embed features of this backbone (and its weights)."""
    weights = f" ({weights})" if weights else ""
    return (f"head {head.name} was trained on {head.backbone} features ({head.config['weights']}), "
            f"not {backbone}{weights}; use --backbone {head.backbone} (or auto)")


class Recommender:
    """Catalogue + backbone (+ optional fine-tuned head) -> index -> search."""

    def __init__(self, catalogue: Catalogue, backbone: Backbone, head=None, cache_dir=None, index_dir=None):
        self.catalogue, self.backbone, self.head = catalogue, backbone, head
        self.cache_dir = cache_root(cache_dir)
        self.index_dir = Path(index_dir) if index_dir else None
        self.index: Index | None = None
        self.rows = None  # catalogue rows the index covers (decodable images)

    @classmethod
    def open(cls, catalogue, backbone="auto", head=None, classes=None, cache_dir=None,
             device="auto", index_dir=None, random_weights=False, per_class=None):
        """Build from specs or already-loaded parts (so several recommenders can
        share one catalogue and one backbone). `head` is a RUN_DIR or
        `hub:OWNER/NAME`; with `backbone="auto"` the head's own backbone is used."""
        head = load_head(head) if isinstance(head, (str, Path)) else head
        if not isinstance(catalogue, Catalogue):
            catalogue = load_catalogue(catalogue, classes, per_class)
        if isinstance(backbone, str):
            name = head.backbone if head is not None and backbone == "auto" else backbone
            backbone = create_backbone(name, device=device, random_weights=random_weights)
        if head is not None and (head.backbone, head.config["weights"]) != (backbone.name, backbone.weights):
            raise LookalikeError(head_mismatch(head, backbone.name, backbone.weights))
        if head is not None and head.tail is not None:
            backbone = backbone.with_tail(head.tail, f"tail:{head.fingerprint}")
        return cls(catalogue, backbone, head, cache_dir, index_dir)

    @property
    def embedding_name(self) -> str:
        return embedding_name(self.backbone.name, self.head)

    def fingerprints(self) -> dict:
        return {
            "catalogue_fingerprint": self.catalogue.fingerprint,
            "features_fingerprint": features_fingerprint(self.catalogue, self.backbone),
            "head_fingerprint": self.head.fingerprint if self.head else None,
        }

    def features(self):
        """Cached backbone features of the catalogue and the rows they cover."""
        return catalogue_features(self.catalogue, self.backbone, self.cache_dir)

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        return embed_views(features, self.head)

    def catalogue_embeddings(self):
        features, rows = self.features()
        return self.embed_features(features), rows

    def build(self, rebuild=False) -> "Recommender":
        """Load the matching index, or build (and cache) it."""
        expected = self.fingerprints()
        folder = self.index_dir or entry_dir(self.cache_dir, "indexes", digest(expected))
        index = None if rebuild else open_index(folder, expected)
        if index is None:
            embeddings, rows = self.catalogue_embeddings()
            meta = dict(expected, catalogue=self.catalogue.spec, backbone=self.backbone.name,
                        head=self.head.name if self.head else None, rows=rows.tolist())
            index = build_index(folder, embeddings, meta)
        self.index, self.rows = index, np.asarray(index.meta["rows"])
        return self

    def query_features(self, image) -> np.ndarray:
        """Backbone features of one query (path, bytes or PIL), validated."""
        return embed_images([open_image(image)], self.backbone)[0]

    def search(self, image, k=5, exact=False) -> list:
        return self.search_features(self.query_features(image), k, exact)

    def search_features(self, features: np.ndarray, k=5, exact=False) -> list:
        """Top-k results for backbone features (lets two recommenders share one
        backbone pass per query)."""
        if self.index is None:
            self.build()
        if k < 1:
            raise LookalikeError(f"k must be at least 1, not {k}")
        query = self.embed_features(features[None, :])[0]
        positions, scores = self.index.search(query, k, exact=exact)
        names = self.catalogue.label_names
        results = []
        for rank, (pos, score) in enumerate(zip(positions, scores), start=1):
            row = int(self.rows[pos])
            results.append(Result(rank, self.catalogue.ids[row], names[self.catalogue.labels[row]],
                                  round(float(score), 4), row))
        return results
