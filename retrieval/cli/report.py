"""`report`: every embedding of a catalogue compared (retrieval/report builds
and writes it)."""

import shlex

from retrieval.cli import options
from retrieval.errors import LookalikeError

DEFAULTS = {"backbones": "all", "autoencoder_epochs": 20, "knn_k": 5, "timing_images": 64, "examples": 4,
            "seed": 0, "device": "auto"}


def add_parsers(subparsers) -> dict:
    from retrieval.models.backbones import available_backbones

    p = subparsers.add_parser(
        "report", help="compare every embedding of a catalogue: metrics, cost, plots (REPORT.md)",
        description="Compare handcrafted features, an autoencoder, every pretrained backbone whose weights can "
                    "be had, their PCA whitening and each --head on one catalogue; write REPORT.md, "
                    "report.json and PNG plots to --output.")
    options.add_catalogue(p, classes_help="report on these classes, source numbering, e.g. 50-98 (classes the "
                                          "heads never trained on)")
    p.add_argument("--head", action="append", default=[], metavar="RUN_DIR",
                   help="a fine-tuned head to compare (RUN_DIR or hub:OWNER/NAME; repeatable)")
    p.add_argument("--backbones", default=DEFAULTS["backbones"],
                   help="pretrained backbones to try, comma-separated, or all (default: "
                        + ", ".join(available_backbones()) + "); one whose weights can't be had is "
                        "skipped, saying why")
    p.add_argument("--autoencoder", metavar="RUN_DIR",
                   help="autoencoder from `python -m finetune --method autoencoder` (default: train one here, "
                        "without labels, on the report's images)")
    p.add_argument("--autoencoder-epochs", type=int, default=DEFAULTS["autoencoder_epochs"],
                   help=f"epochs of the autoencoder trained here (default {DEFAULTS['autoencoder_epochs']})")
    p.add_argument("--knn-k", type=int, default=DEFAULTS["knn_k"],
                   help=f"neighbours voting in kNN classification (default {DEFAULTS['knn_k']})")
    p.add_argument("--timing-images", type=int, default=DEFAULTS["timing_images"],
                   help=f"images decoded and embedded to time each embedding (default {DEFAULTS['timing_images']})")
    p.add_argument("--examples", type=int, default=DEFAULTS["examples"],
                   help=f"example queries shown with each embedding's top 5 (default {DEFAULTS['examples']})")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="autoencoder and t-SNE seed")
    p.add_argument("--output", required=True, metavar="DIR", help="report folder (replaced whole if it "
                                                                   "holds an earlier report)")
    options.add_cache_dir(p)
    p.add_argument("--device", default=DEFAULTS["device"], choices=["auto", "cpu", "cuda"])
    return {"report": cmd_report}


def backbone_names(text: str) -> list:
    """'all' or a comma-separated list of registered backbones."""
    from retrieval.models.backbones import available_backbones, backbone_spec

    if text == "all":
        return available_backbones()
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise LookalikeError("--backbones names no backbone; use all or a comma-separated list")
    return [backbone_spec(name).name for name in names]


def check(parser, args):
    """Mistakes on the command line (argparse's one line, exit 2), before anything loads."""
    if args.command != "report":
        return
    for flag in ("autoencoder_epochs", "knn_k", "timing_images", "examples"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, not {value}")


def checked_backbones(args) -> list:
    """The backbones to compare, after the output folder is checked (LookalikeError)."""
    from retrieval.report.writer import check_output

    check_output(args.output)
    return backbone_names(args.backbones)


def command_line(args) -> str:
    """The command as it would be typed again (options left at their defaults left out)."""
    parts = ["python", "-m", "retrieval", "report", "--catalogue", args.catalogue]
    for flag in ("classes", "per_class", "backbones", "autoencoder", "autoencoder_epochs", "knn_k",
                 "timing_images", "examples", "seed", "device", "cache_dir"):
        value = getattr(args, flag)
        if value is not None and value != DEFAULTS.get(flag):
            parts += [f"--{flag.replace('_', '-')}", str(value)]
    for head in args.head:
        parts += ["--head", head]
    return shlex.join(parts + ["--output", args.output])


def cmd_report(args, out) -> int:
    from retrieval.data.catalogues import load_catalogue
    from retrieval.report.build import Options, build_report
    from retrieval.report.writer import tables, write_report

    backbones = checked_backbones(args)
    catalogue = load_catalogue(args.catalogue, args.classes, args.per_class, args.label_column, args.cache_dir,
                               args.rehash)
    catalogue.require_labels("the report")
    options = Options(backbones, args.head, args.autoencoder, args.autoencoder_epochs, args.knn_k,
                      args.timing_images, args.examples, args.seed, args.cache_dir, args.device)
    built = build_report(catalogue, options)
    output = write_report(args.output, built, command_line(args))
    print(tables(built.report), file=out)
    print(f"\nreport: {len(built.report['embeddings'])} embeddings, {built.report['n_images']} images -> "
          f"{output / 'REPORT.md'}", file=out)
    return 0
