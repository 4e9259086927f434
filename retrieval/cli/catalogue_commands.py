"""`index`, `search`, `recommend`, `evaluate`: one catalogue through one embedding."""

import json
import time
from pathlib import Path

from retrieval.cli import options
from retrieval.search.every_item import SUFFIXES
from retrieval.search.limits import MAX_K


def add_parsers(sub) -> dict:
    p = sub.add_parser("index", help="extract features (cached) and build the index")
    _common(p)
    p.add_argument("--index", help="index folder (default: in the cache, named by fingerprint)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the index even if one matches")

    p = sub.add_parser("search", help="recommend catalogue items that look like an image or a catalogue item")
    _common(p)
    p.add_argument("--image", action="append", default=[], metavar="FILE",
                   help="a query image (repeatable: more like all of them)")
    p.add_argument("--item", action="append", default=[], metavar="ID",
                   help="a catalogue item as the query, from its stored embedding: no backbone pass (repeatable); "
                        "examples never come back as results")
    p.add_argument("--unlike", action="append", default=[], metavar="ID|FILE",
                   help="less like this item or image file (repeatable)")
    p.add_argument("--k", type=int, default=5, help=f"number of results, 1 to {MAX_K} (default 5)")
    _where(p)
    p.add_argument("--min-score", type=float, metavar="S", help="leave out results scoring below S (a cosine)")
    p.add_argument("--diversity", type=float, default=0.0, metavar="L",
                   help="0 (default): by score alone; up to 1: more varied results (maximal marginal relevance)")
    p.add_argument("--no-dedup", action="store_true",
                   help="show near-identical results too (by default they collapse into the highest one)")
    p.add_argument("--exact", action="store_true", help="exact brute-force search instead of the index")
    p.add_argument("--index", help="index folder built by `index --index` (refused if built for other data)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {rank, id, label, score, metadata}")

    p = sub.add_parser("duplicates", help="groups of near-duplicate images in a catalogue")
    _common(p)
    p.add_argument("--threshold", type=float, metavar="T",
                   help="cosine at which two images are near-identical (default: measured per embedding; "
                        "BENCHMARKS.md)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", dest="json_out", metavar="OUT", help="write the groups as JSON")
    output.add_argument("--csv", dest="csv_out", metavar="OUT", help="write one row per image: group, id, label")

    p = sub.add_parser("explain", help="why two images are similar: both, with heat maps of what matches (PNG)")
    _common(p)
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--item", metavar="ID", help="the query: a catalogue item")
    query.add_argument("--image", metavar="FILE", help="the query: an image file")
    p.add_argument("--with", dest="other", required=True, metavar="ID", help="the catalogue item it is compared with")
    p.add_argument("--output", required=True, metavar="FILE.png", help="where to write the picture")

    p = sub.add_parser("recommend", help="every catalogue item's top k lookalikes, written to one file")
    _common(p)
    p.add_argument("--k", type=int, default=10, help=f"results per item, 1 to {MAX_K} (default 10)")
    _where(p)
    p.add_argument("--output", required=True, metavar="FILE", help="FILE.parquet, FILE.csv or FILE.jsonl "
                   "(columns query_id, rank, id, score, label)")
    p.add_argument("--overwrite", action="store_true", help="replace FILE when it exists")

    p = sub.add_parser("evaluate", help="retrieval metrics: each image queries all the others")
    _common(p)
    p.add_argument("--json", dest="json_out", metavar="OUT", help="also write the metrics to this JSON file")
    return {"index": cmd_index, "search": cmd_search, "recommend": cmd_recommend, "duplicates": cmd_duplicates,
            "explain": cmd_explain, "evaluate": cmd_evaluate}


def _where(p):
    p.add_argument("--where", metavar="EXPR", help='keep items whose metadata match, e.g. \'make != query.make and '
                   'price <= 30000\' (query.FIELD: the query item\'s own value); see the README')


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
    if (getattr(args, "milvus_uri", None) or getattr(args, "milvus_token", None)) \
            and getattr(args, "index_backend", None) != "milvus":
        parser.error("--milvus-uri and --milvus-token go with --index-backend milvus")
    if args.command == "evaluate" and args.json_out and Path(args.json_out).is_dir():
        parser.error(f"--json {args.json_out} is a folder; name a file to write the metrics to")
    if args.command in ("search", "recommend") and not 1 <= args.k <= MAX_K:
        parser.error(f"--k must be from 1 to {MAX_K}, not {args.k}")
    if args.command == "search":
        if not args.image and not args.item:
            parser.error("search needs a query: --image FILE or --item ID")
        for image in args.image:
            if not Path(image).is_file():
                parser.error(f"--image {image}: no such file")
        if args.min_score is not None and not -1 <= args.min_score <= 1:
            parser.error(f"--min-score must be a cosine from -1 to 1, not {args.min_score}")
        if not 0 <= args.diversity <= 1:
            parser.error(f"--diversity must be from 0 to 1, not {args.diversity}")
    if args.command == "recommend":
        if Path(args.output).suffix not in SUFFIXES:
            parser.error(f"--output must end in {', '.join(SUFFIXES)}")
        if Path(args.output).exists() and not args.overwrite:
            parser.error(f"--output {args.output} exists; pass --overwrite to replace it")


def recommender(args):
    """The engine for a command's flags (imported here: `--help` and argument errors need no torch)."""
    from retrieval.extract.engines import make_engine
    from retrieval.search.recommender import Recommender

    return Recommender.open(args.catalogue, backbone=args.backbone, head=args.head, classes=args.classes,
                            per_class=args.per_class, cache_dir=args.cache_dir, device=args.device,
                            index_dir=getattr(args, "index", None), runtime=args.runtime,
                            index_backend=args.index_backend, label_column=args.label_column, rehash=args.rehash,
                            milvus_uri=args.milvus_uri, milvus_token=args.milvus_token,
                            engine=make_engine(args.engine, args.ray_address, args.ray_workers,
                                               args.ray_gpus_per_worker))


def cmd_index(args, out) -> int:
    started = time.perf_counter()
    rec = recommender(args).build(rebuild=args.rebuild)
    print(f"index: {len(rec.index)} items from {args.catalogue} with {rec.embedding_name} "
          f"({rec.index.summary()}) in {time.perf_counter() - started:.1f}s -> {rec.index.location}", file=out)
    return 0


def cmd_search(args, out) -> int:
    from retrieval.search.hygiene import Hygiene
    from retrieval.search.query import Query

    unlike_files = [u for u in args.unlike if Path(u).is_file()]  # an existing file is an image, else an id
    query = Query(args.image, args.item, unlike_files, [u for u in args.unlike if u not in unlike_files], args.k,
                  args.where, Hygiene(args.min_score, args.diversity, not args.no_dedup)).checked()
    results = recommender(args).build().answer(query, exact=args.exact)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2, ensure_ascii=False), file=out)
    elif not results:
        print("no results (none matches --where and --min-score)", file=out)
    else:
        width = max(len(r.id) for r in results)
        for r in results:
            shown = "  ".join(f"{k}={v}" for k, v in r.metadata.items())
            twins = f"  (+{len(r.near_identical)} near-identical)" if r.near_identical else ""
            print(f"{r.rank:>3}  {r.id:<{width}}  {r.score:6.3f}  {r.label or ''}  {shown}{twins}".rstrip(), file=out)
    return 0


def cmd_explain(args, out) -> int:
    from retrieval.data.images import open_image
    from retrieval.search.explain import explain_pair
    from retrieval.store.atomic import write_bytes

    rec = recommender(args)
    cat = rec.catalogue
    other = cat.row(args.other)
    if args.item:
        row = cat.row(args.item)
        query, name = cat.image(row), f"{args.item}" + (f" ({cat.label_of(row)})" if cat.has_labels else "")
    else:
        query, name = open_image(args.image), Path(args.image).name
    label = f" ({cat.label_of(other)})" if cat.has_labels else ""
    png, score = explain_pair(rec.embedder, query, cat.image(other), [f"query: {name}", f"{args.other}{label}"])
    write_bytes(args.output, png)
    print(f"explain: {name} and {args.other}, cosine {score:.3f} -> {args.output}", file=out)
    return 0


def cmd_duplicates(args, out) -> int:
    from retrieval.search.duplicates import duplicate_groups, write_groups

    rec = recommender(args).build()
    threshold = rec.near_identical if args.threshold is None else args.threshold
    groups = duplicate_groups(rec, threshold)
    if args.json_out or args.csv_out:
        write_groups(rec, groups, args.json_out or args.csv_out, threshold)
    for number, group in enumerate(groups[:20], 1):
        print(f"{number:>3}  {', '.join(rec.catalogue.ids[r] for r in group['rows'][:8])}"
              + (" ..." if len(group["rows"]) > 8 else ""), file=out)
    print(f"{len(groups)} groups of near-duplicates, {sum(len(g['rows']) for g in groups)} images"
          + (f" -> {args.json_out or args.csv_out}" if args.json_out or args.csv_out else ""), file=out)
    return 0


def cmd_recommend(args, out) -> int:
    from retrieval.search.every_item import recommend_all, write_table
    from retrieval.search.where import parse_where

    started = time.perf_counter()
    rec = recommender(args).build()
    where = parse_where(args.where, rec.catalogue.metadata_fields) if args.where else None
    table = recommend_all(rec, args.k, where)
    write_table(table, args.output)
    print(f"recommend: {table.num_rows:,} results for {int(rec.indexed.sum()):,} items in "
          f"{time.perf_counter() - started:.1f}s -> {args.output}", file=out)
    return 0


def cmd_evaluate(args, out) -> int:
    from retrieval.evaluation.metrics import retrieval_metrics
    from retrieval.evaluation.table import metrics_table
    from retrieval.store.atomic import write_json

    rec = recommender(args)
    rec.catalogue.require_labels("evaluate")
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
