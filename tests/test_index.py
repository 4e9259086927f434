import numpy as np
import pytest

from retrieval.errors import LookalikeError
from retrieval.index import build_index, exact_search, l2_normalise, open_index


def _clustered(n=3000, dim=256, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(60, dim))
    return l2_normalise(centres[rng.integers(0, 60, n)] + rng.normal(0, 0.8, (n, dim)))


def test_annoy_meets_recall_target_against_exact(tmp_path):
    emb = _clustered()
    index = build_index(tmp_path / "ix", emb, {"catalogue_fingerprint": "a"})
    assert index.meta["recall_at_10"] >= 0.99
    rng = np.random.default_rng(1)  # fresh queries near the data, not the audit sample
    queries = l2_normalise(emb[rng.choice(len(emb), 100)] + rng.normal(0, 0.05, (100, emb.shape[1])))
    truth, _ = exact_search(emb, queries, 10)
    hits = sum(len(set(index.search(q, 10)[0].tolist()) & set(t.tolist())) for q, t in zip(queries, truth))
    assert hits / 1000 >= 0.97
    rows, scores = index.search(emb[5], 3)
    assert rows[0] == 5 and scores[0] == pytest.approx(1.0, abs=1e-4)


def test_index_for_other_data_is_refused(tmp_path):
    build_index(tmp_path / "ix", _clustered(n=200), {"catalogue_fingerprint": "a"})
    assert open_index(tmp_path / "ix", {"catalogue_fingerprint": "a"}) is not None
    with pytest.raises(LookalikeError, match="another catalogue"):
        open_index(tmp_path / "ix", {"catalogue_fingerprint": "b"})
