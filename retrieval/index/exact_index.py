"""Exact search over the stored vectors (memory-mapped): no tuning, no
approximation, every query a matrix product. Right for small catalogues
and for checking the approximate backends; changed in place like USearch."""

import numpy as np

from retrieval.errors import LookalikeError
from retrieval.index.annoy_index import load_keys, load_vectors, positions_of
from retrieval.index.base import Index, keys_of, padded, save
from retrieval.vectors import l2_normalise, top_k

FILES = ("embeddings.npy", "keys.npy")


class ExactIndex(Index):
    backend = "exact"
    files = FILES
    settings = {}

    def _load(self):
        self.embeddings = load_vectors(self.folder, self.meta)
        self.keys = load_keys(self.folder, self.meta)

    def summary(self) -> str:
        return "exact search"

    def search(self, queries, k, exact=True):
        rows, scores = top_k(self.embeddings, np.atleast_2d(queries), k)
        return padded(self.keys[rows], scores, k)

    def has(self, keys) -> np.ndarray:
        return np.isin(np.asarray(keys, dtype=np.int64), self.keys)

    def vectors(self, keys) -> np.ndarray:
        return np.asarray(self.embeddings[positions_of(self.keys, keys)])

    def add(self, vectors, keys):
        keys = keys_of(keys, len(np.atleast_2d(vectors)))
        taken = np.intersect1d(keys, self.keys)
        if len(taken) or len(np.unique(keys)) < len(keys):
            raise LookalikeError(f"keys already in the index: {taken[:5].tolist() or 'repeated in the request'}")
        self._rewrite(np.concatenate([self.embeddings, l2_normalise(np.atleast_2d(vectors))]),
                      np.concatenate([self.keys, keys]))

    def remove(self, keys):
        keys = keys_of(keys)
        missing = np.setdiff1d(keys, self.keys)
        if len(missing):
            raise LookalikeError(f"keys not in the index: {missing[:5].tolist()}")
        kept = ~np.isin(self.keys, keys)
        self._rewrite(np.asarray(self.embeddings[kept]), self.keys[kept])

    def _rewrite(self, vectors, keys):
        fresh = type(self).build(self.folder, vectors, {k: v for k, v in self.meta.items() if k != "files"}, keys)
        self.meta, self.embeddings, self.keys = fresh.meta, fresh.embeddings, fresh.keys

    @classmethod
    def build(cls, folder, vectors, meta, keys=None) -> "ExactIndex":
        vectors = l2_normalise(vectors)
        keys = keys_of(np.arange(len(vectors)) if keys is None else keys, len(vectors))

        def write(tmp):
            np.save(tmp / "embeddings.npy", vectors)
            np.save(tmp / "keys.npy", keys)
            return FILES

        return cls(folder, save(folder, dict(meta, backend=cls.backend, dim=vectors.shape[1], n_items=len(vectors)),
                                write))
