import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

from retrieval.evaluation.metrics import retrieval_metrics
from retrieval.vectors import l2_normalise


def test_metrics_agree_with_pytorch_metric_learning():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 20, 500)
    emb = l2_normalise(rng.normal(size=(500, 16)) + np.eye(20)[labels] @ rng.normal(size=(20, 16)))
    ours = retrieval_metrics(emb, labels, chunk=128, progress=False)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                              knn_func=CustomKNN(CosineSimilarity()))
    e, lab = torch.tensor(emb), torch.tensor(labels)
    theirs = calc.get_accuracy(e, lab, e, lab, ref_includes_query=True)
    assert ours["recall_at_1"] == pytest.approx(theirs["precision_at_1"], abs=1e-6)  # P@1 is R@1 here
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-5)
    assert ours["recall_at_1"] <= ours["recall_at_2"] <= ours["recall_at_4"] <= ours["recall_at_8"] < 1


def test_perfect_and_random_embeddings_score_as_they_should():
    """One-hot labels as embeddings find only their own class (1.0 on every
    metric); random embeddings land near chance (R@1 ~ 1/classes)."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 20)
    perfect = retrieval_metrics(np.eye(10)[labels] + 0.0, labels, progress=False)
    assert all(perfect[k] == pytest.approx(1.0) for k in ("recall_at_1", "recall_at_8", "map_at_r"))
    chance = retrieval_metrics(l2_normalise(rng.normal(size=(200, 64))), labels, progress=False)
    assert 0.02 < chance["recall_at_1"] < 0.2 and chance["map_at_r"] < 0.15


def test_no_class_with_two_images_is_a_clear_error():
    from retrieval.errors import LookalikeError

    with pytest.raises(LookalikeError, match="no class has two or more images"):
        retrieval_metrics(np.eye(3), [0, 1, 2], progress=False)
