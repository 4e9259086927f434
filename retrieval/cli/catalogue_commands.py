"""`index`, `search`, `evaluate`: one catalogue through one embedding."""

import json
import time
from pathlib import Path

from retrieval.cli import options
from retrieval.search.limits import MAX_K


def add_parsers(sub) -> dict:
    p = sub.add_parser("index", help="extract features (cached) and build the index")
    _common(p)
    p.add_argument("--index", help="index folder (default: in the cache, named by fingerprint)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the index even if one matches")

    p = sub.add_parser("search", help="recommend catalogue items that look like an image")
    _common(p)
    p.add_argument("--image", required=True, help="query image file")
    p.add_argument("--k", type=int, default=5, help=f"number of results, 1 to {MAX_K} (default 5)")
    p.add_argument("--exact", action="store_true", help="exact brute-force search instead of the index")
    p.add_argument("--index", help="index folder built by `index --index` (refused if built for other data)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {rank, id, label, score}")

    p = sub.add_parser("evaluate", help="retrieval metrics: each image queries all the others")
    _common(p)
    p.add_argument("--json", dest="json_out", metavar="OUT", help="also write the metrics to this JSON file")
    return {"index": cmd_index, "search": cmd_search, "evaluate": cmd_evaluate}


def _common(p):
    options.add_catalogue(p)
    options.add_model(p)
    options.add_engine(p)


def check(parser, args):
    """This module's commands' mistakes, reported before any model loads."""
    ray_flags = [getattr(args, name, None) for name in ("ray_address", "ray_workers", "ray_gpus_per_worker")]
    if getattr(args, "engine", "local") == "local" and any(ray_flags):
        parser.error("--ray-address, --ray-workers and --ray-gpus-per-worker need --engine ray")
    if getattr(args, "ray_workers", None) is not None and args.ray_workers < 1:
        parser.error("--ray-workers must be at least 1")
    if getattr(args, "ray_gpus_per_worker", 0) < 0:
        parser.error("--ray-gpus-per-worker must not be negative")
    if args.command == "evaluate" and args.json_out and Path(args.json_out).is_dir():
        parser.error(f"--json {args.json_out} is a folder; name a file to write the metrics to")
    if args.command == "search":
        if not 1 <= args.k <= MAX_K:
            parser.error(f"--k must be from 1 to {MAX_K}, not {args.k}")
        if not Path(args.image).is_file():
            parser.error(f"--image {args.image}: no such file")


def recommender(args):
    """The engine for a command's flags (imported here: `--help` and argument errors need no torch)."""
    from retrieval.extract.engines import make_engine
    from retrieval.search.recommender import Recommender

    return Recommender.open(args.catalogue, backbone=args.backbone, head=args.head, classes=args.classes,
                            per_class=args.per_class, cache_dir=args.cache_dir, device=args.device,
                            index_dir=getattr(args, "index", None), runtime=args.runtime,
                            index_backend=args.index_backend,
                            engine=make_engine(args.engine, args.ray_address, args.ray_workers,
                                               args.ray_gpus_per_worker))


def cmd_index(args, out) -> int:
    started = time.perf_counter()
    rec = recommender(args).build(rebuild=args.rebuild)
    print(f"index: {len(rec.index)} items from {args.catalogue} with {rec.embedding_name} "
          f"({rec.index.summary()}) in {time.perf_counter() - started:.1f}s -> {rec.index.folder}", file=out)
    return 0


def cmd_search(args, out) -> int:
    results = recommender(args).build().search(args.image, k=args.k, exact=args.exact)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2), file=out)
    else:
        width = max(len(r.id) for r in results)
        for r in results:
            print(f"{r.rank:>3}  {r.id:<{width}}  {r.score:6.3f}  {r.label}", file=out)
    return 0


def cmd_evaluate(args, out) -> int:
    from retrieval.evaluation.metrics import retrieval_metrics
    from retrieval.evaluation.table import metrics_table
    from retrieval.store.atomic import write_json

    rec = recommender(args)
    embeddings, rows = rec.catalogue_embeddings()
    metrics = retrieval_metrics(embeddings, [rec.catalogue.labels[r] for r in rows])
    metrics.update(embedding=rec.embedding_name, backbone=rec.embedder.backbone.name,
                   head=rec.embedder.head.name if rec.embedder.head else None,
                   catalogue=args.catalogue, classes=args.classes)
    print(metrics_table([(rec.embedding_name, metrics)], style="text", digits=4), file=out)
    print(f"{metrics['n_images']} images in {metrics['n_classes']} classes", file=out)
    if args.json_out:
        write_json(args.json_out, metrics)
    return 0
