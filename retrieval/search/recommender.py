"""The one engine behind the CLI, the app and the tests: a Recommender answers
queries for one catalogue and one Embedder."""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from retrieval.data.catalogue import Catalogue
from retrieval.data.catalogues import load_catalogue
from retrieval.data.images import open_image
from retrieval.embedding.embedder import Embedder, create_embedder
from retrieval.errors import DamagedArtefact, LookalikeError
from retrieval.extract.features import catalogue_features, catalogue_features_fingerprint
from retrieval.index.backends import build_index, choose_backend, open_index
from retrieval.index.base import KIND, LEGACY
from retrieval.store.atomic import check_replaceable
from retrieval.store.cache import cache_root, entry_dir, mark_used
from retrieval.store.feature_store import FeatureStore
from retrieval.store.fingerprint import digest
from retrieval.store.locks import writing

log = logging.getLogger(__name__)
# in the name of cached index folders: a format change never meets an older entry
INDEX_FORMAT = 2


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


class Recommender:
    """Catalogue + Embedder -> cached features -> index -> search."""

    def __init__(self, catalogue: Catalogue, embedder: Embedder, cache_dir=None, index_dir=None, engine=None,
                 index_backend="auto"):
        """`engine` extracts features the store lacks (extract.engines.make_engine;
        default: this process); `index_backend`: auto, annoy or usearch
        (index_backends.py)."""
        self.catalogue, self.embedder, self.engine = catalogue, embedder, engine
        self.index_backend = choose_backend(index_backend, len(catalogue))
        self.cache_dir = cache_root(cache_dir)
        self.index_dir = Path(index_dir) if index_dir else None
        self.index = None
        self.rows = None  # catalogue rows the index covers (decodable images)

    @classmethod
    def open(cls, catalogue, backbone="auto", head=None, classes=None, per_class=None, cache_dir=None,
             device="auto", index_dir=None, runtime=None, engine=None, index_backend="auto"):
        """From specs (or a loaded Catalogue), through `create_embedder`."""
        if not isinstance(catalogue, Catalogue):
            catalogue = load_catalogue(catalogue, classes, per_class)
        return cls(catalogue, create_embedder(backbone, head, device, runtime, cache_dir), cache_dir, index_dir, engine,
                   index_backend)

    @property
    def embedding_name(self) -> str:
        return self.embedder.name

    def fingerprints(self) -> dict:
        return {
            "catalogue_fingerprint": self.catalogue.fingerprint,
            "features_fingerprint": catalogue_features_fingerprint(self.catalogue.fingerprint, self.embedder),
            "embedder_fingerprint": self.embedder.fingerprint,
        }

    def features(self, progress=None):
        """Cached backbone features of the catalogue (N, V, D) and the rows they cover."""
        return catalogue_features(self.catalogue, self.embedder, self.cache_dir, progress=progress,
                                  engine=self.engine)

    def catalogue_embeddings(self, progress=None):
        features, rows = self.features(progress)
        return self.embedder.embed_features(features), rows

    def build(self, rebuild=False, progress=None) -> "Recommender":
        """Load the matching index, or build (and cache) it. A damaged index
        in the cache is rebuilt; one in a folder the user named is refused."""
        expected = self.fingerprints()
        folder = self.index_dir or entry_dir(self.cache_dir, "indexes",
                                             digest(expected, self.index_backend, INDEX_FORMAT))
        index = None
        if not rebuild:
            try:
                # a folder the user named is hashed whole, however large: it is
                # refused when damaged, never rebuilt, so it must never be served damaged
                index = open_index(folder, expected, deep=self.index_dir is not None or None)
                if index is not None and self.index_dir is None:
                    self._mark_used(folder)
            except DamagedArtefact as e:
                if self.index_dir is not None:
                    raise LookalikeError(f"{e}; rebuild it with `python -m retrieval index --rebuild "
                                         f"--index {self.index_dir}`") from e
                log.warning("%s: rebuilding it", e)
        if index is None:
            check_replaceable(folder, KIND, "--index", LEGACY)  # before the slow part
            embeddings, rows = self.catalogue_embeddings(progress)
            if progress is not None:
                progress.start("building the index", len(rows), "items")
            meta = dict(expected, catalogue=self.catalogue.spec, embedding=self.embedder.name, rows=rows.tolist())
            with writing(self.cache_dir):
                index = build_index(folder, embeddings, meta, self.index_backend)
        rows = index.meta.get("rows")
        if not isinstance(rows, list) or len(rows) != index.meta["n_items"]:
            raise DamagedArtefact(f"{folder}/meta.json: damaged (its rows don't match its {index.meta['n_items']} "
                                  "items); rebuild it with `python -m retrieval index --rebuild`")
        self.index, self.rows = index, np.asarray(rows)
        return self

    def _mark_used(self, folder: Path):
        """Mark a cached index and the feature chunks it was built from as
        used (`prune`): opening it reads no features, but the next change to
        the catalogue needs them."""
        mark_used(folder)
        FeatureStore.for_embedder(self.cache_dir, "features", self.embedder).mark_used(self.catalogue.keys)

    def search(self, image, k=5, exact=False) -> list:
        """Top-k results for one query image (path, bytes or PIL), validated."""
        return self.search_embedding(self.embedder.embed([open_image(image)])[0], k, exact)

    def search_embedding(self, query: np.ndarray, k=5, exact=False, exclude_row=None) -> list:
        """Top-k results for one query embedding; `exclude_row` leaves a
        catalogue item used as the query out of its own results."""
        if self.index is None:
            self.build()
        if k < 1:
            raise LookalikeError(f"k must be at least 1, not {k}")
        positions, scores = self.index.search(query[None], k + (exclude_row is not None), exact=exact)
        names = self.catalogue.label_names
        results = []
        for pos, score in zip(positions[0][positions[0] >= 0], scores[0]):
            row = int(self.rows[pos])
            if row != exclude_row and len(results) < k:
                results.append(Result(len(results) + 1, self.catalogue.ids[row], names[self.catalogue.labels[row]],
                                      round(float(score), 4), row))
        return results
