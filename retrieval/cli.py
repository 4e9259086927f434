"""`python -m retrieval index|search|evaluate|verify|prune|deploy`: thin wrappers over the engine.

Whatever libraries print while models load (torch.hub's "Downloading: ..."
line, for one) goes to stderr: stdout carries only the command's answer, so
`search --json` pipes into a JSON parser."""

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path

from .allocator import keep_freed_memory
from .atomic import write_json
from .backbones import available_backbones, backbone_spec
from .errors import LookalikeError
from .evaluate import METRIC_KEYS, retrieval_metrics
from .report.command import add_report_parser, cmd_report
from .service import MAX_K


def _common(p: argparse.ArgumentParser):
    p.add_argument("--catalogue", required=True,
                   help="DIR, FILE.parquet, fashion-mnist[:SPLIT] or hub:OWNER/NAME[:SPLIT]")
    p.add_argument("--classes", help="keep these classes, source numbering, e.g. 1-49,60 "
                                     "(Stanford Cars: devkit ids 1-196; others: 0-based labels)")
    p.add_argument("--per-class", type=int, metavar="N", help="keep the first N images of each class")
    p.add_argument("--backbone", default="auto", help="auto (default), " + ", ".join(available_backbones()))
    p.add_argument("--head", help="fine-tuned embedding: a RUN_DIR from `python -m finetune` or hub:OWNER/NAME "
                                  "(default: the pretrained features)")
    p.add_argument("--cache-dir", help="cache root (default $LOOKALIKE_CACHE or the user cache dir)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--runtime", help="what runs the backbone: auto (default: OpenVINO on the CPU, in bfloat16 "
                                     "where the CPU has it), torch, openvino, openvino-bf16 "
                                     "(default $LOOKALIKE_RUNTIME)")
    p.add_argument("--index-backend", default="auto", choices=["auto", "annoy", "usearch"],
                   help="auto (default): Annoy up to 100,000 items, USearch (HNSW) beyond (BENCHMARKS.md)")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="what extracts missing features: this process (default) or Ray Data (docs/ray.md)")
    p.add_argument("--ray-address", help="with --engine ray: ray://HOST:10001 or auto (default: a local instance)")
    p.add_argument("--ray-workers", type=int, metavar="N",
                   help="with --engine ray: workers, one model each (default: one per cluster CPU or GPU share)")
    p.add_argument("--ray-gpus-per-worker", type=float, default=0, metavar="G",
                   help="with --engine ray: GPUs per worker (default 0: CPU workers)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m retrieval", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="extract features (cached) and build the Annoy index")
    _common(p)
    p.add_argument("--index", help="index folder (default: in the cache, named by fingerprint)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the index even if one matches")

    p = sub.add_parser("search", help="recommend catalogue items that look like an image")
    _common(p)
    p.add_argument("--image", required=True, help="query image file")
    p.add_argument("--k", type=int, default=5, help=f"number of results, 1 to {MAX_K} (default 5)")
    p.add_argument("--exact", action="store_true", help="exact brute-force search instead of Annoy")
    p.add_argument("--index", help="index folder built by `index --index` (refused if built for other data)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {rank, id, label, score}")

    p = sub.add_parser("evaluate", help="retrieval metrics: each image queries all the others")
    _common(p)
    p.add_argument("--json", dest="json_out", metavar="OUT", help="also write the metrics to this JSON file")

    p = sub.add_parser("verify", help="check every cache entry (and named runs, indexes) against its checksums")
    p.add_argument("--cache-dir", help="cache root (default $LOOKALIKE_CACHE or the user cache dir)")
    p.add_argument("--head", action="append", default=[], metavar="RUN_DIR", help="also check this run (repeatable)")
    p.add_argument("--index", action="append", default=[], metavar="DIR", help="also check this index (repeatable)")
    p.add_argument("--repair", action="store_true", help="remove damaged cache entries (rebuilt when next needed)")

    p = sub.add_parser("prune", help="delete cache entries and feature chunks nothing has used for DAYS days")
    p.add_argument("--unused-for", type=float, required=True, metavar="DAYS",
                   help="remove what no run or server has used for this many days (> 0)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.add_argument("--cache-dir", help="cache root (default $LOOKALIKE_CACHE or the user cache dir)")

    p = sub.add_parser("bench", help="extraction, query and index speed figures (issue #12) in one run")
    p.add_argument("--catalogue", default="../shared/data/stanford-cars-thumbs", help="default: the car thumbnails")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--head", help="also time queries through this fine-tuned RUN_DIR")
    p.add_argument("--per-class", type=int, default=4, metavar="N",
                   help="extraction is timed on the first N images of each class (default 4)")
    p.add_argument("--rounds", type=int, default=2, help="timed rounds per pipeline, interleaved (median)")
    p.add_argument("--index-sizes", type=int, nargs="*", default=[4_000, 100_000, 1_000_000], metavar="N",
                   help="synthetic index sizes (default 4000 100000 1000000; none to skip)")
    p.add_argument("--index-backends", nargs="+", default=["annoy", "usearch"], choices=["annoy", "usearch"],
                   help="index backends to measure (default both; Annoy at 1M takes minutes a setting)")
    p.add_argument("--cache-dir", help="cache root (default: a fresh temporary one, so the figures are cold)")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="also write the figures to this JSON file")

    add_report_parser(sub)

    p = sub.add_parser("deploy", help="upload this project to a Hugging Face Space (needs a token and the network)")
    p.add_argument("--space", required=True, metavar="OWNER/NAME", help="the Space to create or update")
    return parser


def check_arguments(parser, args):
    """Mistakes a user can make on the command line, reported before any model loads."""
    if getattr(args, "backbone", "auto") != "auto":
        try:
            backbone_spec(args.backbone)
        except LookalikeError as e:
            parser.error(str(e))
    if getattr(args, "per_class", None) is not None and args.per_class < 1:
        parser.error("--per-class must be at least 1")
    if args.command == "bench" and args.per_class < 2:
        parser.error("bench: --per-class must be at least 2 (R@1 needs another image of each query's class)")
    ray_flags = [getattr(args, name, None) for name in ("ray_address", "ray_workers", "ray_gpus_per_worker")]
    if getattr(args, "engine", "local") == "local" and any(ray_flags):
        parser.error("--ray-address, --ray-workers and --ray-gpus-per-worker need --engine ray")
    if getattr(args, "ray_workers", None) is not None and args.ray_workers < 1:
        parser.error("--ray-workers must be at least 1")
    if getattr(args, "ray_gpus_per_worker", 0) < 0:
        parser.error("--ray-gpus-per-worker must not be negative")
    if args.command == "prune" and not args.unused_for > 0:
        parser.error("--unused-for must be more than 0 days (a run writing now must keep its files)")
    if args.command == "search":
        if not 1 <= args.k <= MAX_K:
            parser.error(f"--k must be from 1 to {MAX_K}, not {args.k}")
        if not Path(args.image).is_file():
            parser.error(f"--image {args.image}: no such file")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    keep_freed_memory()  # a CNN's activations reuse memory instead of page-faulting it anew
    answer = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):  # libraries' chatter; the answer goes to `answer`
            return COMMANDS[args.command](args, answer)
    except LookalikeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _recommender(args):
    from .engine import Recommender  # here: `--help` and argument errors need no torch
    from .features import make_engine

    return Recommender.open(args.catalogue, backbone=args.backbone, head=args.head, classes=args.classes,
                            per_class=args.per_class, cache_dir=args.cache_dir, device=args.device,
                            index_dir=getattr(args, "index", None), runtime=args.runtime,
                            index_backend=args.index_backend,
                            engine=make_engine(args.engine, args.ray_address, args.ray_workers,
                                               args.ray_gpus_per_worker))


def cmd_index(args, out) -> int:
    started = time.perf_counter()
    rec = _recommender(args).build(rebuild=args.rebuild)
    m = rec.index.meta
    print(f"index: {m['n_items']} items from {args.catalogue} with {rec.embedding_name} "
          f"({rec.index.describe()}) in {time.perf_counter() - started:.1f}s -> {rec.index.folder}", file=out)
    return 0


def cmd_search(args, out) -> int:
    rec = _recommender(args)
    results = rec.build().search(args.image, k=args.k, exact=args.exact)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2), file=out)
    else:
        width = max(len(r.id) for r in results)
        for r in results:
            print(f"{r.rank:>3}  {r.id:<{width}}  {r.score:6.3f}  {r.label}", file=out)
    return 0


def cmd_evaluate(args, out) -> int:
    rec = _recommender(args)
    embeddings, rows = rec.catalogue_embeddings()
    labels = [rec.catalogue.labels[r] for r in rows]
    metrics = retrieval_metrics(embeddings, labels)
    metrics.update(embedding=rec.embedding_name, backbone=rec.embedder.backbone.name,
                   head=rec.embedder.head.name if rec.embedder.head else None,
                   catalogue=args.catalogue, classes=args.classes)
    for key in METRIC_KEYS:
        print(f"{key:<14} {metrics[key]:.4f}", file=out)
    print(f"{'images':<14} {metrics['n_images']} in {metrics['n_classes']} classes, {rec.embedding_name}", file=out)
    if args.json_out:
        write_json(args.json_out, metrics)
    return 0


def cmd_verify(args, out) -> int:
    from .cache import cache_root
    from .verify import verify

    report = verify(cache_root(args.cache_dir), args.head, args.index, args.repair)
    for what, problem, repaired in report:
        print(f"{'ok' if problem is None else 'removed' if repaired else 'DAMAGED'}  {what}"
              + (f": {problem}" if problem else ""), file=out)
    damaged = sum(problem is not None and not repaired for _, problem, repaired in report)
    print(f"{len(report)} checked, {damaged} damaged", file=out)
    return 1 if damaged else 0


def cmd_prune(args, out) -> int:
    from .cache import cache_root
    from .prune import prune

    removed = prune(cache_root(args.cache_dir), args.unused_for, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for what, size in removed:
        print(f"{verb}  {what} ({size / 1e6:,.1f} MB)", file=out)
    print(f"{verb} {len(removed)} entries and chunks unused for {args.unused_for:g} days: "
          f"{sum(size for _, size in removed) / 1e6:,.1f} MB", file=out)
    return 0


def cmd_bench(args, out) -> int:
    from .bench import bench, markdown, write_results

    results = bench(args.catalogue, args.backbone, args.head, args.per_class, args.rounds, tuple(args.index_sizes),
                    tuple(args.index_backends), args.cache_dir)
    print(markdown(results), file=out)
    if args.json_out:
        write_results(results, args.json_out)
    return 0


def cmd_deploy(args, out) -> int:
    from .deploy import deploy

    print(f"deployed to {deploy(args.space)}", file=out)
    return 0


COMMANDS = {"index": cmd_index, "search": cmd_search, "evaluate": cmd_evaluate, "verify": cmd_verify,
            "prune": cmd_prune, "bench": cmd_bench, "report": cmd_report, "deploy": cmd_deploy}
