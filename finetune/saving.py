"""What a fine-tuning run leaves behind: the head, its metrics, curves and
model card, written as one run folder through retrieval's run-folder module
(the owner of that format), atomically: a failed or interrupted run never
replaces a good one."""

from pathlib import Path

from retrieval.embedding import run_dir
from retrieval.evaluation.table import metrics_table
from retrieval.models.backbones import Backbone
from retrieval.models.views import DEFAULT_VIEWS
from retrieval.store.atomic import write_json

from .plots import plot_curves
from .train import TrainResult


def save_run(output, result: TrainResult, backbone: Backbone, training: dict, names,
             views=DEFAULT_VIEWS) -> Path:
    """Write the run; `backbone` is the pretrained one the head was trained
    on, `training` what the run was made from (recorded in config.json)."""
    output = Path(output)
    metrics = {
        "validation_classes": [names[c] for c in result.split.validation_classes],
        "train_classes": [names[c] for c in result.split.train_classes],
        **result.baselines,
        "untrained": result.untrained,
        "best": result.best,
        "epochs": result.history,
        "train_seconds": result.seconds,
    }
    training = dict(training, best_epoch=result.best["epoch"])
    config = run_dir.head_config(output.name, backbone.config(), views, result.head.architecture(), training)
    extras = {run_dir.METRICS_FILE: lambda path: write_json(path, metrics),
              run_dir.CARD_FILE: lambda path: path.write_text(model_card(output.name, backbone.name, training,
                                                                          metrics))}
    if result.history:
        extras[run_dir.CURVES_FILE] = lambda path: plot_curves(
            path, result.history, result.baselines, result.best["epoch"],
            f"{output.name}: {training.get('loss')} on {backbone.name} features")
    return run_dir.save_run(output, config, result.head.state_dict(), extras)


def model_card(name: str, backbone: str, training: dict, metrics: dict) -> str:
    """A Hugging Face model card: what the head is, how it was made, what it scores."""
    rows = [("pretrained " + backbone, metrics["pretrained"]),
            ("PCA whitening (baseline)", metrics["whitening"]),
            (f"fine-tuned ({training.get('loss')}, epoch {metrics['best']['epoch']})", metrics["best"])]
    return f"""---
library_name: pytorch
tags: [image-retrieval, metric-learning, lookalike]
---
# Lookalike embedding head `{name}`

An embedding head for Lookalike visual-similarity search, trained with
pytorch-metric-learning (`{training.get('loss')}` loss) on cached `{backbone}` features of
`{training.get('catalogue')}` (classes {training.get('classes') or 'all'}). Use it with
`python -m retrieval search --catalogue SPEC --image PATH --head hub:REPO_ID`.

Validation on {len(metrics['validation_classes'])} classes held out from training:

{metrics_table(rows)}
"""
