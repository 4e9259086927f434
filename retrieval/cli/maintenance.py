"""`verify`, `prune`, `deploy`: looking after the cache and the Space."""

from retrieval.cli import options


def add_parsers(sub) -> dict:
    p = sub.add_parser("verify", help="check every cache entry (and named runs, indexes) against its checksums")
    options.add_cache_dir(p)
    p.add_argument("--head", action="append", default=[], metavar="RUN_DIR", help="also check this run (repeatable)")
    p.add_argument("--index", action="append", default=[], metavar="DIR", help="also check this index (repeatable)")
    p.add_argument("--repair", action="store_true", help="remove damaged cache entries (rebuilt when next needed)")

    p = sub.add_parser("prune", help="delete cache entries and feature chunks nothing has used for DAYS days")
    p.add_argument("--unused-for", type=float, required=True, metavar="DAYS",
                   help="remove what no run or server has used for this many days (> 0)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    options.add_cache_dir(p)

    p = sub.add_parser("deploy", help="upload this project to a Hugging Face Space (needs a token and the network)")
    p.add_argument("--space", required=True, metavar="OWNER/NAME", help="the Space to create or update")
    return {"verify": cmd_verify, "prune": cmd_prune, "deploy": cmd_deploy}


def check(parser, args):
    if args.command == "prune" and not args.unused_for > 0:
        parser.error("--unused-for must be more than 0 days (a run writing now must keep its files)")


def cmd_verify(args, out) -> int:
    from retrieval.embedding.embedder import load_head
    from retrieval.errors import LookalikeError
    from retrieval.store.cache import cache_root
    from retrieval.store.verify import entry_problem, verify

    def run_problem(run_dir) -> str | None:
        try:
            load_head(run_dir)
        except LookalikeError as e:
            return str(e)
        return None

    report = verify(cache_root(args.cache_dir), args.repair)
    report += [(str(run), run_problem(run), False) for run in args.head]
    report += [(str(index), entry_problem(index), False) for index in args.index]
    for what, problem, repaired in report:
        print(f"{'ok' if problem is None else 'removed' if repaired else 'DAMAGED'}  {what}"
              + (f": {problem}" if problem else ""), file=out)
    damaged = sum(problem is not None and not repaired for _, problem, repaired in report)
    print(f"{len(report)} checked, {damaged} damaged", file=out)
    return 1 if damaged else 0


def cmd_prune(args, out) -> int:
    from retrieval.store.cache import cache_root
    from retrieval.store.prune import prune

    removed = prune(cache_root(args.cache_dir), args.unused_for, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for what, size in removed:
        print(f"{verb}  {what} ({size / 1e6:,.1f} MB)", file=out)
    print(f"{verb} {len(removed)} entries and chunks unused for {args.unused_for:g} days: "
          f"{sum(size for _, size in removed) / 1e6:,.1f} MB", file=out)
    return 0


def cmd_deploy(args, out) -> int:
    from retrieval.cli.deploy import deploy

    print(f"deployed to {deploy(args.space)}", file=out)
    return 0
