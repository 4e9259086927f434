"""One fine-tuning run from a Recommender's cached features to a saved
RUN_DIR: what `python -m finetune` runs, and what the app runs after its
page is up for a catalogue whose configured head does not exist yet."""

import copy
from dataclasses import asdict

from retrieval.errors import LookalikeError
from retrieval.extract.features import stage_inputs
from retrieval.models.stages import StagedNet
from retrieval.search.recommender import Recommender

from .inputs import FrozenFeatures, StageInputs
from .saving import save_run
from .train import TrainConfig, TrainResult, train_head


def finetune(rec: Recommender, output, config: TrainConfig = TrainConfig(), unfreeze: int = 0, device=None,
             source: dict | None = None, progress=None) -> TrainResult:
    """Train a head on `rec`'s catalogue (pretrained embedder) and save it in
    `output`; `source` records where the catalogue came from."""
    import torch

    device = device or torch.device("cpu")
    inputs, rows = training_inputs(rec, unfreeze)
    labels = [rec.catalogue.labels[r] for r in rows]
    names = rec.catalogue.label_names
    result = train_head(inputs, labels, config, device, names, progress)
    training = dict(asdict(config), **(source or {}), unfreeze=unfreeze, device=str(device), **rec.fingerprints())
    save_run(output, result, rec.embedder.backbone, training, names, rec.embedder.views)
    return result


def training_inputs(rec: Recommender, unfreeze: int):
    """(inputs for train_head, catalogue rows): cached features, or with
    --unfreeze N the cached inputs of the last N stages."""
    if unfreeze == 0:
        features, rows = rec.features()
        return FrozenFeatures(features), rows
    backbone = rec.embedder.backbone
    if not isinstance(backbone.model, StagedNet):
        raise LookalikeError(f"--unfreeze needs a backbone made of stages (the EfficientNet-Lite ones or a resnet), "
                             f"not {backbone.name}")
    n_stages = len(backbone.model.stages)
    if not 0 < unfreeze < n_stages:
        raise LookalikeError(f"--unfreeze must be 0..{n_stages - 1} for {backbone.name}, not {unfreeze}")
    start = n_stages - unfreeze
    maps, pooled, rows = stage_inputs(rec.catalogue, rec.embedder, start, rec.cache_dir)
    tail = copy.deepcopy(backbone.model.tail(start)).float().requires_grad_(True)
    return StageInputs(maps, pooled, tail), rows
