"""`python -m retrieval verify`: every feature store chunk, cache entry,
index and run checked against the sizes and checksums written with it (all
files hashed, however large). Damaged chunks and cache entries can be
removed (`--repair`): the next run rebuilds them. Runs and index folders the
user named are only reported."""

import shutil
from pathlib import Path

from retrieval.errors import LookalikeError
from retrieval.store.artefacts import check
from retrieval.store.cache import entries, read_meta
from retrieval.store.feature_store import FeatureStore

STORE_KINDS = ("features", "stage-inputs")
CACHED_KINDS = ("indexes",)


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


def verify(cache_root: Path, repair=False) -> list:
    """(what, problem or None, repaired) for every cache entry."""
    report = []
    for kind in STORE_KINDS:
        for folder in entries(cache_root / kind):
            store = FeatureStore(folder, {})
            for chunk, problem in store.problems():
                if repair:
                    chunk.unlink()
                report.append((f"{kind}/{folder.name}/{chunk.name}", problem, repair))
            report.append((f"{kind}/{folder.name} ({len(store.chunks())} chunks)", None, False))
    for kind in CACHED_KINDS:
        for folder in entries(cache_root / kind):
            problem = entry_problem(folder)
            if problem and repair:
                shutil.rmtree(folder)
            report.append((f"{kind}/{folder.name}", problem, bool(problem and repair)))
    return report
