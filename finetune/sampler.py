"""pytorch-metric-learning's class-balanced sampler, imported without its
faiss helpers: its samplers import `faiss.contrib.torch_utils`, which
rewrites faiss's search for the whole process, and Milvus Lite, running
faiss in the same process, then fails every search (its `params` argument
is refused). Nothing here uses faiss."""

import sys

_FAISS_TORCH_PATCH = "faiss.contrib.torch_utils"


def _import_sampler():
    if _FAISS_TORCH_PATCH in sys.modules:  # someone asked for it already
        from pytorch_metric_learning.samplers import MPerClassSampler
        return MPerClassSampler
    sys.modules[_FAISS_TORCH_PATCH] = None  # the library treats it as absent (faiss not installed)
    try:
        from pytorch_metric_learning.samplers import MPerClassSampler
    finally:
        del sys.modules[_FAISS_TORCH_PATCH]
    return MPerClassSampler


MPerClassSampler = _import_sampler()
