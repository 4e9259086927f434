"""`bench`: extraction, query and index speed figures in one run."""

from retrieval.cli import options


def add_parsers(sub) -> dict:
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
    p.add_argument("--filter-sizes", type=int, nargs="*", default=[4_000, 100_000], metavar="N",
                   help="synthetic catalogue sizes for filtered search latency (default 4000 100000; none to skip)")
    p.add_argument("--catalogue-sizes", type=int, nargs="*", default=[], metavar="N",
                   help="generated catalogues of N small images, indexed, reopened, grown and shrunk by 1,000 with "
                        "the tiny test backbone (e.g. 100000 1000000; default none)")
    p.add_argument("--catalogue-backends", nargs="+", default=["usearch"], choices=["usearch", "exact", "milvus"],
                   help="index backends of --catalogue-sizes (default usearch)")
    p.add_argument("--sections", default="extraction,index,filters",
                   help="what to measure, comma-separated: extraction (and queries), index, filters "
                        "(default all three; --catalogue-sizes adds its own)")
    options.add_cache_dir(p, help="cache root (default: a fresh temporary one, so the figures are cold)")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="also write the figures to this JSON file")
    return {"bench": cmd_bench}


SECTIONS = ("extraction", "index", "filters")


def check(parser, args):
    if args.command != "bench":
        return
    if args.per_class < 2:
        parser.error("bench: --per-class must be at least 2 (R@1 needs another image of each query's class)")
    if set(args.sections.split(",")) - set(SECTIONS):
        parser.error(f"--sections takes {', '.join(SECTIONS)}, comma-separated")


def cmd_bench(args, out) -> int:
    from retrieval.bench.extraction import bench, markdown, write_results

    sections = args.sections.split(",")
    results = bench(args.catalogue, args.backbone, args.head, args.per_class, args.rounds,
                    tuple(args.index_sizes) if "index" in sections else (), tuple(args.index_backends), args.cache_dir,
                    tuple(args.filter_sizes) if "filters" in sections else (), "extraction" in sections,
                    tuple(args.catalogue_sizes), tuple(args.catalogue_backends))
    print(markdown(results), file=out)
    if args.json_out:
        write_results(results, args.json_out)
    return 0
