"""RUN_DIR: everything a fine-tuning run leaves behind, written atomically (a
failed or interrupted run never replaces a good one): head weights
(safetensors), config.json, metrics.json, curves.png and a model card."""

from pathlib import Path

from safetensors.torch import save_file

from retrieval.atomic import atomic_dir, write_json
from retrieval.errors import LookalikeError
from retrieval.evaluate import metrics_table
from retrieval.heads import CONFIG_FILE, WEIGHTS_FILE

from .plots import plot_curves
from .train import TrainResult


def check_output(output, overwrite: bool) -> Path:
    """Refuse to clobber an earlier run unless asked (before any slow work)."""
    output = Path(output)
    if (output / WEIGHTS_FILE).exists() and not overwrite:
        raise LookalikeError(f"{output} already holds a fine-tuned head; pass --overwrite or another --output")
    if output.exists() and not output.is_dir():
        raise LookalikeError(f"--output {output} is a file, not a folder")
    return output


def save_run(output, result: TrainResult, config: dict, names) -> Path:
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
    with atomic_dir(output) as tmp:
        save_file({k: v.contiguous() for k, v in result.head.state_dict().items()}, str(tmp / WEIGHTS_FILE))
        write_json(tmp / CONFIG_FILE, config)
        write_json(tmp / "metrics.json", metrics)
        if result.history:
            plot_curves(tmp / "curves.png", result.history, result.baselines, result.best["epoch"],
                        f"{config['name']}: {config['loss']} on {config['backbone']} features")
        (tmp / "README.md").write_text(model_card(config, metrics))
    return output


def model_card(config: dict, metrics: dict) -> str:
    """A Hugging Face model card: what the head is, how it was made, what it scores."""
    rows = [("pretrained " + config["backbone"], metrics["pretrained"]),
            ("PCA whitening (baseline)", metrics["whitening"]),
            (f"fine-tuned ({config['loss']}, epoch {metrics['best']['epoch']})", metrics["best"])]
    return f"""---
library_name: pytorch
tags: [image-retrieval, metric-learning, lookalike]
---
# Lookalike embedding head `{config['name']}`

An embedding head for Lookalike visual-similarity search, trained with
pytorch-metric-learning (`{config['loss']}` loss) on cached `{config['backbone']}` features of
`{config['catalogue']}` (classes {config['classes'] or 'all'}). Use it with
`python -m retrieval search --catalogue SPEC --image PATH --head hub:REPO_ID`.

Validation on {len(metrics['validation_classes'])} classes held out from training:

{metrics_table(rows)}
"""
