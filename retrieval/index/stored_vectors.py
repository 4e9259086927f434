"""The vectors an index keeps beside its own structure (embeddings.npy, and
keys.npy: each vector's key), memory-mapped and checked against meta.json:
what exact search, item queries and the Annoy and exact backends read."""

import numpy as np

from retrieval.errors import DamagedArtefact
from retrieval.index.base import padded
from retrieval.vectors import top_k

FILES = ("embeddings.npy", "keys.npy")


class StoredVectors:
    """For an index whose folder holds embeddings.npy and keys.npy."""

    def _load_stored(self):
        self.embeddings = load_vectors(self.folder, self.meta)
        self.keys = load_keys(self.folder, self.meta)

    def all_keys(self) -> np.ndarray:
        return self.keys

    def has(self, keys) -> np.ndarray:
        return np.isin(np.asarray(keys, dtype=np.int64), self.keys)

    def vectors(self, keys) -> np.ndarray:
        return np.asarray(self.embeddings[positions_of(self.keys, keys)])

    def search_exact(self, queries, k):
        """Exact search over the stored vectors: (keys, scores), as `Index.search`."""
        rows, scores = top_k(self.embeddings, np.atleast_2d(queries), k)
        return padded(self.keys[rows], scores, k)


def write_stored(folder, vectors: np.ndarray, keys: np.ndarray) -> tuple:
    """Write embeddings.npy and keys.npy into `folder`; their names."""
    np.save(folder / "embeddings.npy", vectors)
    np.save(folder / "keys.npy", keys)
    return FILES


def load_keys(folder, meta: dict) -> np.ndarray:
    """keys.npy: one int64 key per indexed vector, as meta.json counts them."""
    path = folder / "keys.npy"
    try:
        keys = np.load(path)
    except (OSError, ValueError) as e:
        raise DamagedArtefact(f"{path}: damaged ({e})") from e
    if keys.shape != (meta["n_items"],) or keys.dtype != np.int64:
        raise DamagedArtefact(f"{path}: damaged (holds {keys.shape} {keys.dtype}, meta.json records "
                              f"{meta['n_items']} int64)")
    return keys


def positions_of(stored: np.ndarray, keys) -> np.ndarray:
    """Where each of `keys` is in `stored` (KeyError for one that isn't)."""
    keys = np.atleast_1d(np.asarray(keys, dtype=np.int64))
    order = np.argsort(stored, kind="stable")
    at = np.searchsorted(stored, keys, sorter=order).clip(0, max(len(stored) - 1, 0))
    positions = order[at] if len(stored) else at
    if len(keys) and (not len(stored) or (stored[positions] != keys).any()):
        raise KeyError(f"keys not in the index: {keys[stored[positions] != keys][:5].tolist()}")
    return positions


def load_vectors(folder, meta: dict) -> np.ndarray:
    """embeddings.npy, memory-mapped, with the shape and dtype meta.json records."""
    path = folder / "embeddings.npy"
    try:
        vectors = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise DamagedArtefact(f"{path}: damaged ({e})") from e
    written = (meta["n_items"], meta["dim"])
    if vectors.shape != written or vectors.dtype != np.float32:
        raise DamagedArtefact(f"{path}: damaged (holds {vectors.shape} {vectors.dtype}, "
                              f"meta.json records {written} float32)")
    return vectors
