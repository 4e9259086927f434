"""The one engine behind the CLI, the app and the tests: a Recommender answers
queries for one catalogue and one Embedder."""

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from retrieval.data.catalogue import Catalogue, RowsOfKey
from retrieval.data.catalogues import load_catalogue
from retrieval.data.images import open_image
from retrieval.embedding.embedder import Embedder, create_embedder
from retrieval.errors import DamagedArtefact, LookalikeError
from retrieval.extract.features import catalogue_features, catalogue_features_fingerprint
from retrieval.index.backends import build_index, choose_backend, open_index
from retrieval.index.base import KIND, LEGACY
from retrieval.index.milvus_index import MilvusTarget, collection_name, default_uri
from retrieval.search.filtered import search_allowed
from retrieval.search.hygiene import POOL, Hygiene, near_identical, tidy
from retrieval.search.query import combine
from retrieval.search.where import parse_where
from retrieval.store.atomic import check_replaceable
from retrieval.store.cache import cache_root, entry_dir, mark_used
from retrieval.store.feature_store import FeatureStore
from retrieval.store.fingerprint import digest
from retrieval.store.locks import writing

log = logging.getLogger(__name__)
# in the name of cached index folders: a format change never meets an older entry
INDEX_FORMAT = 3


@dataclass
class Result:
    """One recommendation, the same shape everywhere (CLI, API, UI captions)."""

    rank: int
    id: str
    label: str | None           # class name; None in a catalogue without classes
    score: float
    row: int                    # catalogue row, to fetch the image
    metadata: dict = field(default_factory=dict)
    near_identical: list = field(default_factory=list)  # ids of the results collapsed into this one

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("row")
        return d


class Recommender:
    """Catalogue + Embedder -> cached features -> index -> search."""

    def __init__(self, catalogue: Catalogue, embedder: Embedder, cache_dir=None, index_dir=None, engine=None,
                 index_backend="auto", milvus_uri=None, milvus_token=None):
        """`engine` extracts features the store lacks (extract.engines.make_engine;
        default: this process); `index_backend`: auto, annoy, usearch, exact or
        milvus (index/backends.py), the latter at `milvus_uri` (default: a Milvus
        Lite database in the cache) with `milvus_token` (default
        $LOOKALIKE_MILVUS_TOKEN)."""
        self.catalogue, self.embedder, self.engine = catalogue, embedder, engine
        embedder.backbone.calibrate_on(catalogue)  # an int8 network still to make is calibrated on it
        self.milvus = (milvus_uri, milvus_token or os.environ.get("LOOKALIKE_MILVUS_TOKEN"))
        self.index_backend = choose_backend(index_backend, len(catalogue))
        self.cache_dir = cache_root(cache_dir)
        self.index_dir = Path(index_dir) if index_dir else None
        self.index = None
        self.row_keys = catalogue.index_keys  # index key per row (shared with the catalogue's other recommenders)

    @classmethod
    def open(cls, catalogue, backbone="auto", head=None, classes=None, per_class=None, cache_dir=None,
             device="auto", index_dir=None, runtime=None, engine=None, index_backend="auto", label_column=None,
             rehash=False, milvus_uri=None, milvus_token=None):
        """From specs (or a loaded Catalogue), through `create_embedder`."""
        if not isinstance(catalogue, Catalogue):
            catalogue = load_catalogue(catalogue, classes, per_class, label_column, cache_dir, rehash)
        return cls(catalogue, create_embedder(backbone, head, device, runtime, cache_dir), cache_dir, index_dir, engine,
                   index_backend, milvus_uri, milvus_token)

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
        """Load the matching index, or build (and cache) it. An index of the
        same catalogue and model whose catalogue has since changed is grown
        in place where its backend can (new items added, removed ones taken
        out), else rebuilt from the stored vectors. A damaged index in the
        cache is rebuilt; one in a folder the user named is refused."""
        expected = self.fingerprints()
        # what an index must have been built for to serve (or grow to) this catalogue
        model = {"catalogue_source": self.catalogue.source or self.catalogue.fingerprint,
                 "embedder_fingerprint": expected["embedder_fingerprint"]}
        folder = self._location(model)
        index = None
        if not rebuild:
            try:
                # a folder the user named is hashed whole, however large: it is
                # refused when damaged, never rebuilt, so it must never be served damaged
                index = open_index(folder, model, deep=self.index_dir is not None or None)
                if index is not None and isinstance(folder, Path) and self.index_dir is None:
                    self._mark_used(folder)
            except DamagedArtefact as e:
                if self.index_dir is not None:
                    raise LookalikeError(f"{e}; rebuild it with `python -m retrieval index --rebuild "
                                         f"--index {self.index_dir}`") from e
                log.warning("%s: rebuilding it", e)
        if index is not None and index.meta.get("catalogue_fingerprint") != self.catalogue.fingerprint:
            index = self._grow(index, progress) if index.grows_in_place else None
        if index is None:
            if isinstance(folder, Path):
                check_replaceable(folder, KIND, "--index", LEGACY)  # before the slow part
            embeddings, rows = self.catalogue_embeddings(progress)
            keys, first = np.unique(self.row_keys[rows], return_index=True)  # identical images: one vector
            if progress is not None:
                progress.start("building the index", len(keys), "items")
            meta = dict(expected, **model, catalogue=self.catalogue.spec, embedding=self.embedder.name)
            with writing(self.cache_dir):
                index = build_index(folder, embeddings[first], meta, self.index_backend, keys=keys,
                                    metadata=self.catalogue.metadata_table.take(rows[first]))
        self.index = index
        self.indexed = self.index.has(self.row_keys)  # rows whose image is in the index (decodable ones)
        return self

    def _grow(self, index, progress=None):
        """The index changed in place to this catalogue: the vectors of its new
        images added (extracting only those), those of its removed ones taken
        out, saved as one change."""
        present = index.all_keys()
        removed = np.setdiff1d(present, self.row_keys)
        new_keys, first = np.unique(self.row_keys, return_index=True)
        added = first[~np.isin(new_keys, present)]
        vectors, keys = np.zeros((0, index.meta["dim"]), dtype=np.float32), np.zeros(0, dtype=np.int64)
        added_rows = np.zeros(0, dtype=np.int64)
        if len(added):
            subset = self.catalogue.restrict(np.sort(added), digest(self.catalogue.fingerprint, "added"))
            features, rows = catalogue_features(subset, self.embedder, self.cache_dir, progress=progress,
                                                engine=self.engine)
            added_rows = np.sort(added)[rows]
            vectors, keys = self.embedder.embed_features(features), self.row_keys[added_rows]
        log.info("index %s: %d items added, %d removed in place", index.backend, len(keys), len(removed))
        with_metadata = {"metadata": self.catalogue.metadata_table.take(added_rows)} if index.filters_inside else {}
        with writing(self.cache_dir):
            index.update(vectors, keys, removed, dict(self.fingerprints(), catalogue=self.catalogue.spec),
                         **with_metadata)
        return index

    def _location(self, model: dict):
        """Where this catalogue's index lives: a folder (the one named, or one
        in the cache by catalogue and model) or a Milvus collection."""
        if self.index_backend == "milvus":
            uri, token = self.milvus
            return MilvusTarget(uri or default_uri(self.cache_dir), collection_name(model), token)
        return self.index_dir or entry_dir(self.cache_dir, "indexes", digest(model, self.index_backend, INDEX_FORMAT))

    def _mark_used(self, folder: Path):
        """Mark a cached index and the feature chunks it was built from as
        used (`prune`): opening it reads no features, but the next change to
        the catalogue needs them."""
        mark_used(folder)
        FeatureStore.for_embedder(self.cache_dir, "features", self.embedder).mark_used(self.catalogue.keys)

    @property
    def rows_of_key(self) -> RowsOfKey:
        """Index key -> catalogue rows with that image, in catalogue order."""
        return self.catalogue.rows_of_index_key

    def item_embedding(self, row: int) -> np.ndarray:
        """A catalogue item's stored embedding: no backbone pass."""
        if self.index is None:
            self.build()
        if not self.indexed[row]:
            raise LookalikeError(f"item {self.catalogue.ids[row]!r} has no embedding (its image can't be read)")
        return self.index.vectors(self.row_keys[row:row + 1])[0]

    def answer(self, query, liked_images=(), unliked_images=(), exact=False) -> list:
        """Results for a checked search.query.Query: its liked examples (the
        embeddings of its images, `liked_images`, made by the caller, who may
        share one backbone pass among several recommenders; else here) less
        its disliked ones, its filter (whose query.FIELDs are the first liked
        item's) and hygiene; no example comes back."""
        cat = self.catalogue
        liked, unliked = [cat.row(i) for i in query.items], [cat.row(i) for i in query.unlike_items]
        if query.images and not len(liked_images):
            liked_images = self.embedder.embed([open_image(image) for image in query.images])
        if query.unlike_images and not len(unliked_images):
            unliked_images = self.embedder.embed([open_image(image) for image in query.unlike_images])
        vectors = [*liked_images, *(self.item_embedding(r) for r in liked)]
        against = [*unliked_images, *(self.item_embedding(r) for r in unliked)]
        where = parse_where(query.where, cat.metadata_fields) if query.where else None
        return self.search_embedding(combine(np.asarray(vectors), np.asarray(against) if against else None),
                                     query.k, exact, exclude_rows=liked + unliked, where=where,
                                     query_row=liked[0] if liked else None, hygiene=query.hygiene)

    def search(self, image, k=5, exact=False, where=None) -> list:
        """Top-k results for one query image (path, bytes or PIL), validated."""
        return self.search_embedding(self.embedder.embed([open_image(image)])[0], k, exact, where=where)

    def search_embedding(self, query: np.ndarray, k=5, exact=False, exclude_rows=(), where=None,
                         query_row=None, hygiene: Hygiene | None = None) -> list:
        """Top-k results for one query embedding. `exclude_rows` (catalogue
        items used as the query) never come back; `where`: a parsed filter
        (search.where), its `query.FIELD`s those of `query_row`."""
        return self.search_many(query[None], k, exact, [exclude_rows], where, [query_row], hygiene)[0]

    @property
    def near_identical(self) -> float:
        """The cosine above which two of this embedding's results are near-identical (search/hygiene.py)."""
        return near_identical(self.embedder.backbone.name, self.embedder.head is not None)

    def search_many(self, queries: np.ndarray, k=5, exact=False, exclude_rows=None, where=None,
                    query_rows=None, hygiene: Hygiene | None = None) -> list:
        """search_embedding for many queries at once (one index call per
        group of queries that share a filter); `hygiene`: score floor,
        collapsing of near-identical results, variety (search/hygiene.py)."""
        if self.index is None:
            self.build()
        if k < 1:
            raise LookalikeError(f"k must be at least 1, not {k}")
        exclude_rows = exclude_rows or [()] * len(queries)
        query_rows = query_rows or [None] * len(queries)
        out = [None] * len(queries)
        pool = k * POOL if hygiene is not None and hygiene.pools else k
        for allowed_rows, members, values in self._filter_groups(where, query_rows):
            extra = max((len(exclude_rows[i]) for i in members), default=0)
            if where is not None and self.index.filters_inside:  # the database runs the filter itself
                expr = where.to_milvus(values, field=self.index.field)
                keys, scores = self.index.search(queries[members], pool + extra, exact, expr=expr)
                allowed_rows = None
            else:
                allowed = None if allowed_rows is None else np.unique(self.row_keys[allowed_rows & self.indexed])
                keys, scores = search_allowed(self.index, queries[members], pool + extra, allowed, exact)
            for i, key_row, score_row in zip(members, keys, scores):
                out[i] = self._results(key_row, score_row, pool, set(exclude_rows[i]), allowed_rows)
                if hygiene is not None:
                    vectors = self.index.vectors(self.row_keys[[r.row for r in out[i]]]) if out[i] else None
                    out[i] = tidy(out[i], vectors, k, hygiene, self.near_identical)
                for result in out[i]:  # only the results kept: a pool holds k * POOL candidates
                    result.metadata = self.catalogue.metadata(result.row)
        return out

    def _filter_groups(self, where, query_rows) -> list:
        """[(allowed rows bool mask or None, query positions, query values)]:
        one group when the filter reads no query field, else one per distinct
        query values (a database filtering inside gets no mask)."""
        everyone = list(range(len(query_rows)))
        if where is None:
            return [(None, everyone, None)]
        groups = {}
        for i, row in enumerate(query_rows):
            values = None if row is None or not where.uses_query else \
                self.catalogue.metadata_of(row, where.query_fields)
            groups.setdefault(_frozen(values), (values, []))[1].append(i)
        inside = self.index is not None and self.index.filters_inside
        return [(None if inside else where.mask(self.catalogue.metadata_table, values), members, values)
                for values, members in groups.values()]

    def _results(self, keys, scores, k, exclude: set, allowed_rows) -> list:
        """Up to k Results (their metadata left for search_many to fill in those kept)."""
        results = []
        for key, score in zip(keys.tolist(), scores.tolist()):
            for row in self.rows_of_key.get(key, ()) if key >= 0 else ():
                if row in exclude or (allowed_rows is not None and not allowed_rows[row]) or len(results) >= k:
                    continue
                results.append(Result(len(results) + 1, self.catalogue.ids[row], self.catalogue.label_of(row),
                                      round(float(score), 4), row))
        return results


def _frozen(values) -> tuple:
    return tuple(sorted((values or {}).items(), key=lambda item: item[0]))
