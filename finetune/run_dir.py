"""RUN_DIR: everything a fine-tuning run leaves behind, written atomically (a
failed or interrupted run never replaces a good one): the head and its
config.json (written by `Embedder.save_pretrained`, which owns that format),
metrics.json, curves.png and a model card."""

from pathlib import Path

from retrieval.atomic import atomic_dir, write_json
from retrieval.backbones import Backbone
from retrieval.embedder import WEIGHTS_FILE, Embedder, trained_head
from retrieval.errors import LookalikeError
from retrieval.evaluate import metrics_table
from retrieval.views import DEFAULT_VIEWS

from .plots import plot_curves
from .train import TrainResult


def check_output(output, overwrite: bool, weights_file=WEIGHTS_FILE, holds="a fine-tuned head") -> Path:
    """Refuse to clobber an earlier run (whose weights are `weights_file`)
    unless asked, before any slow work."""
    output = Path(output)
    if (output / weights_file).exists() and not overwrite:
        raise LookalikeError(f"{output} already holds {holds}; pass --overwrite or another --output")
    if output.exists() and not output.is_dir():
        raise LookalikeError(f"--output {output} is a file, not a folder")
    return output


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
    embedder = Embedder(backbone, tuple(views), trained_head(result.head, backbone, output.name, views))
    with atomic_dir(output) as tmp:
        embedder.save_pretrained(tmp, dict(training, best_epoch=result.best["epoch"]))
        write_json(tmp / "metrics.json", metrics)
        if result.history:
            plot_curves(tmp / "curves.png", result.history, result.baselines, result.best["epoch"],
                        f"{output.name}: {training.get('loss')} on {backbone.name} features")
        (tmp / "README.md").write_text(model_card(output.name, backbone.name, training, metrics))
    return output


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
