import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

from retrieval.evaluate import retrieval_metrics
from retrieval.index import l2_normalise


def test_metrics_agree_with_pytorch_metric_learning():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 20, 500)
    emb = l2_normalise(rng.normal(size=(500, 16)) + np.eye(20)[labels] @ rng.normal(size=(20, 16)))
    ours = retrieval_metrics(emb, labels, chunk=128, progress=False)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                              knn_func=CustomKNN(CosineSimilarity()))
    e, l = torch.tensor(emb), torch.tensor(labels)
    theirs = calc.get_accuracy(e, l, e, l, ref_includes_query=True)
    assert ours["precision_at_1"] == pytest.approx(theirs["precision_at_1"], abs=1e-6)
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-5)
    assert ours["recall_at_1"] <= ours["recall_at_2"] <= ours["recall_at_4"] <= ours["recall_at_8"] < 1
