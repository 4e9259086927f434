"""`python -m retrieval verify`: every cache entry, index and run checked
against the sizes and checksums written with it (all files hashed, however
large). Damaged cache entries can be removed (`--repair`): the next run
rebuilds them. Runs and index folders the user named are only reported."""

import shutil
from pathlib import Path

from .artefacts import check
from .cache import read_meta
from .errors import LookalikeError

CACHED_KINDS = ("features", "stage-inputs", "indexes")


def entry_problem(folder: Path) -> str | None:
    """Why a cache entry or index folder can't be trusted, or None."""
    try:
        meta = read_meta(folder)
        if meta is None:
            return "no meta.json (unfinished or not an entry)"
        check(folder, meta.get("files"), deep=True)
    except LookalikeError as e:
        return str(e)
    return None


def run_problem(run_dir) -> str | None:
    from .embedder import load_head  # torch only when a run is asked for

    try:
        load_head(run_dir)
    except LookalikeError as e:
        return str(e)
    return None


def verify(cache_root: Path, runs=(), indexes=(), repair=False) -> list:
    """(what, problem or None, repaired) for every cache entry and each named
    run and index folder."""
    report = []
    for kind in CACHED_KINDS:
        for folder in sorted((cache_root / kind).glob("*")) if (cache_root / kind).is_dir() else []:
            if folder.name.startswith("."):  # an unfinished atomic write
                continue
            problem = entry_problem(folder)
            if problem and repair:
                shutil.rmtree(folder)
            report.append((f"{kind}/{folder.name}", problem, bool(problem and repair)))
    report += [(str(run), run_problem(run), False) for run in runs]
    report += [(str(index), entry_problem(Path(index)), False) for index in indexes]
    return report
