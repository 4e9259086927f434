"""Synthetic clustered unit vectors and their exact top-k: the stand-in for a
catalogue of a million embeddings that index benchmarks and tests measure
recall against (no real catalogue that large is at hand).

Points are drawn around random unit centres with a decaying spectrum of
spread (coordinate i has standard deviation proportional to 1/sqrt(i+1)),
like the principal components of real embeddings, then L2-normalised, so
cosine similarity is their inner product. Everything is seeded: the same
arguments give the same vectors on every machine."""

import numpy as np

from retrieval.vectors import l2_normalise

SPREAD = 0.8  # expected norm of a point's offset from its centre, before normalisation
CHUNK = 65_536  # rows generated at a time: bounds temporary memory


def default_clusters(n: int) -> int:
    """One cluster per ~200 points, within [10, 10,000]: a catalogue of many
    product types, each with a few hundred look-alikes."""
    return int(np.clip(n // 200, 10, 10_000))


class Clustered:
    """A seeded mixture of Gaussian clusters on the unit sphere; `points`
    draws the catalogue, `queries` fresh points from the same clusters."""

    def __init__(self, dim=128, n_clusters=1000, seed=0, spread=SPREAD):
        rng = np.random.default_rng(seed)
        self.dim, self.seed = dim, seed
        self.centres = l2_normalise(rng.normal(size=(n_clusters, dim)))
        scale = 1.0 / np.sqrt(np.arange(1, dim + 1))
        self.scale = (spread * scale / np.linalg.norm(scale)).astype(np.float32)

    def points(self, n: int, stream=0) -> np.ndarray:
        """(n, dim) float32 unit vectors; `stream` picks an independent draw."""
        rng = np.random.default_rng([self.seed, stream + 1])
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            which = rng.integers(0, len(self.centres), stop - start)
            noise = rng.standard_normal((stop - start, self.dim), dtype=np.float32) * self.scale
            out[start:stop] = l2_normalise(self.centres[which] + noise)
        return out

    def queries(self, n: int) -> np.ndarray:
        """Fresh points from the same clusters, none of them in `points()`."""
        return self.points(n, stream=1)
