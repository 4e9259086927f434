"""2-D maps of embeddings (t-SNE, scikit-learn) and where a new query falls
on one. t-SNE places only the points it was fitted on, so a query that is
not a catalogue item is put at the similarity-weighted mean of the positions
of its nearest catalogue items (the search results): where its neighbours
are is where it belongs on the map."""

import numpy as np
from tqdm.auto import tqdm

from retrieval.vectors import l2_normalise

PCA_DIMS = 50  # t-SNE's usual first step: denoises and speeds it up
# ONE_THREAD: scikit-learn's t-SNE runs on one OpenMP thread. On the 2-core
# dev machine under others' load, 1,000 points took 114 s wall and 36 s of
# CPU on its default two threads (waiting on each other), 32 s and 6.4 s on one.


def tsne_map(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, d) vectors -> (N, 2) t-SNE positions of their L2-normalised form
    (Euclidean distance then ranks pairs as cosine similarity does)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = l2_normalise(vectors).astype(np.float64)
    if x.shape[1] > PCA_DIMS and len(x) > PCA_DIMS:
        x = PCA(PCA_DIMS, random_state=seed).fit_transform(x)
    perplexity = min(30.0, (len(x) - 1) / 3)
    with threadpool_limits(1):  # see ONE_THREAD
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x).astype(np.float32)


def tsne_maps(embeddings, seed: int = 0) -> dict:
    """{embedding name: (N, 2) positions}."""
    return {e.name: tsne_map(e.vectors, seed) for e in tqdm(embeddings, desc="t-SNE maps", unit="embedding")}


def query_position(ids, xy: np.ndarray, result_ids, scores, query_id=None):
    """A query's place on a map: a catalogue item's own position, else the
    similarity-weighted mean of its results' positions (those on the map);
    None when none of them is."""
    position = {item: i for i, item in enumerate(ids)}
    if query_id in position:
        return xy[position[query_id]]
    found = [(position[r], max(float(s), 1e-6)) for r, s in zip(result_ids, scores) if r in position]
    if not found:
        return None
    rows, weights = zip(*found)
    return np.average(xy[list(rows)], axis=0, weights=weights)
