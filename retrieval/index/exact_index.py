"""Exact search over the stored vectors (memory-mapped): no tuning, no
approximation, every query a matrix product. Right for small catalogues
and for checking the approximate backends; changed in place like USearch."""

import numpy as np

from retrieval.index.base import FolderIndex, keys_of, save
from retrieval.index.stored_vectors import FILES, StoredVectors, write_stored
from retrieval.vectors import l2_normalise


class ExactIndex(StoredVectors, FolderIndex):
    backend = "exact"
    files = FILES
    settings = {}

    def _load(self):
        self._load_stored()

    def summary(self) -> str:
        return "exact search"

    def search(self, queries, k, exact=True):
        return self.search_exact(queries, k)

    @property
    def grows_in_place(self) -> bool:
        return True

    def update(self, vectors, keys, removed, meta: dict):
        """Rewrite the vectors with `keys` added and `removed` gone, atomically."""
        keys, removed = keys_of(keys, len(keys)), keys_of(removed)
        self.check_change(keys, removed)
        kept = ~np.isin(self.keys, removed)
        vectors = np.concatenate([np.asarray(self.embeddings[kept]),
                                  l2_normalise(np.asarray(vectors, dtype=np.float32).reshape(-1, self.meta["dim"]))])
        fresh = type(self).build(self.folder, vectors, {k: v for k, v in {**self.meta, **meta}.items() if k != "files"},
                                 np.concatenate([self.keys[kept], keys]))
        self.meta, self.embeddings, self.keys = fresh.meta, fresh.embeddings, fresh.keys

    @classmethod
    def build(cls, folder, vectors, meta, keys=None, metadata=None) -> "ExactIndex":
        vectors = l2_normalise(vectors)
        keys = keys_of(np.arange(len(vectors)) if keys is None else keys, len(vectors))
        return cls(folder, save(folder, dict(meta, backend=cls.backend, dim=vectors.shape[1], n_items=len(vectors)),
                                lambda tmp: write_stored(tmp, vectors, keys)))
