"""`python -m finetune`: train a metric-learning embedding head on cached
pretrained backbone features, validated on classes it never trains on
(`--method head`, the default), or a small convolutional autoencoder on the
catalogue's pixels without labels (`--method autoencoder`, for the report)."""

import argparse
from dataclasses import fields

from retrieval.cli import options, runner
from retrieval.data.catalogues import load_catalogue
from retrieval.embedding.run_dir import check_output
from retrieval.evaluation.table import metrics_table
from retrieval.models.backbones import default_device
from retrieval.models.whitening import KINDS
from retrieval.report import autoencoder
from retrieval.search.recommender import Recommender

from .hub import push_run
from .losses import LOSSES, describe_losses
from .pipeline import finetune
from .train import TrainConfig

DEFAULT_CATALOGUE = "hub:tanganke/stanford_cars:train"


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m finetune", description=__doc__)
    p.add_argument("--method", default="head", choices=["head", "autoencoder"],
                   help="head (default): a metric-learning head on backbone features; autoencoder: a "
                        f"{autoencoder.SIZE}x{autoencoder.SIZE}-input, {autoencoder.LATENT}-d convolutional "
                        "autoencoder trained on the images without labels (uses --epochs, --lr, --batch-size, "
                        "--seed)")
    options.add_catalogue(p, DEFAULT_CATALOGUE, classes_help="train on these classes, source numbering, e.g. 1-98")
    options.add_model(p)
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--loss", default=d.loss, choices=[*LOSSES, "none"],
                   help=f"metric-learning loss (default {d.loss}; none fits the whitening only): "
                        + describe_losses())
    p.add_argument("--unfreeze", type=int, default=0, metavar="N",
                   help="also train the backbone's last N stages (efficientnet_lite0: 9 stages, resnets: 5; "
                        "efficientnet_lite0_lite2: lite0's, lite2 stays frozen), "
                        "from their cached inputs; slow on a CPU, quick on a GPU (default 0: frozen)")
    p.add_argument("--stage-lr", type=float, default=d.stage_lr, help="learning rate of unfrozen stages")
    p.add_argument("--output", default="runs/latest", help="RUN_DIR to write (default runs/latest)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--projection-dim", type=int, default=d.projection_dim)
    p.add_argument("--whitening", default=d.whitening, choices=KINDS,
                   help=f"fixed whitening concatenated to the learned projection (default {d.whitening})")
    p.add_argument("--whitening-dim", type=int, default=d.whitening_dim)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--images-per-class", type=int, default=d.images_per_class, help="MPerClassSampler m")
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience in epochs")
    p.add_argument("--validation-fraction", type=float, default=d.validation_fraction,
                   help="share of the classes (the last ones) held out for validation")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="upload RUN_DIR with a model card to the Hub")
    return p


def main(argv=None) -> int:
    return runner.run(build_parser(), {None: run}, argv, check_arguments)


def check_arguments(parser, args):
    """Mistakes a user can make on the command line, reported before any model loads."""
    positive = ("epochs", "batch_size", "images_per_class", "patience")
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.unfreeze < 0 or args.projection_dim < 0 or args.whitening_dim < 0:
        parser.error("--unfreeze, --projection-dim and --whitening-dim can't be negative")
    options.check(parser, args)


def run(args, out) -> int:
    if args.method == "autoencoder":
        return run_autoencoder(args, out)
    output = check_output(args.output, args.overwrite)
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    rec = Recommender.open(args.catalogue, backbone=args.backbone, classes=args.classes, per_class=args.per_class,
                           cache_dir=args.cache_dir, device=args.device, label_column=args.label_column,
                           rehash=args.rehash)
    rec.catalogue.require_labels("fine-tuning")
    source = {"catalogue": args.catalogue, "classes": args.classes, "per_class": args.per_class}
    result = finetune(rec, output, config, args.unfreeze, default_device(args.device), source)
    print(report(result, output), file=out)
    if args.push_to_hub:
        print(f"pushed to {push_run(output, args.push_to_hub)}", file=out)
    return 0


def run_autoencoder(args, out) -> int:
    output = check_output(args.output, args.overwrite)
    config = autoencoder.AutoencoderConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                           seed=args.seed)
    catalogue = load_catalogue(args.catalogue, args.classes, args.per_class, args.label_column, args.cache_dir,
                               args.rehash)
    data, _ = autoencoder.catalogue_pixels(catalogue)
    result = autoencoder.train_autoencoder(data, config)
    source = {"catalogue": args.catalogue, "classes": args.classes, "per_class": args.per_class,
              "n_images": len(data), "catalogue_fingerprint": catalogue.fingerprint}
    autoencoder.save_autoencoder(output, result, config, source)
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    print(f"autoencoder: reconstruction loss {first:.4f} -> {last:.4f} over {len(result.history)} epochs "
          f"on {len(data)} images in {result.seconds:.1f}s -> {output}", file=out)
    return 0


def report(result, output) -> str:
    """The validation table, so the terminal shows what fine-tuning bought."""
    rows = [*result.baselines.items(), (f"fine-tuned (epoch {result.best['epoch']})", result.best)]
    lines = [f"validation on {len(result.split.validation_classes)} held-out classes "
             f"({len(result.split.validation)} images):", metrics_table(rows, style="text")]
    lines.append(f"trained in {result.seconds:.1f}s -> {output}")
    return "\n".join(lines)
