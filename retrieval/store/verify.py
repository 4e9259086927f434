"""`python -m retrieval verify`: every kind of cache entry checked against the
sizes and checksums written with it (all files hashed, however large):
feature store chunks and thumbnails against the digest in their names,
indexes and converted networks against the record in their sealed meta.json.
Damaged chunks, thumbnails and entries can be removed (`--repair`): the next
run makes them again. Runs and index folders the user named are only
reported (cli/maintenance.py adds them)."""

import shutil
from pathlib import Path

from retrieval.errors import LookalikeError
from retrieval.store.artefacts import check, check_seal, sha256_file
from retrieval.store.cache import check_root, entries, read_meta
from retrieval.store.feature_store import FeatureStore

STORE_KINDS = ("features", "stage-inputs")
ENTRY_KINDS = ("indexes", "openvino")  # folders with a sealed meta.json
NAMED_KINDS = ("thumbnails",)          # files named ROW.DIGEST.SUFFIX, a folder per catalogue


def entry_problem(folder) -> str | None:
    """Why a cache entry or index folder can't be trusted, or None."""
    folder = Path(folder)
    try:
        meta = read_meta(folder)
        if meta is None:
            return "no meta.json (unfinished or not an entry)"
        check_seal(folder / "meta.json", meta)
        check(folder, meta.get("files"), deep=True)
    except LookalikeError as e:
        return str(e)
    return None


def named_problem(path: Path) -> str | None:
    """Why a file named by its digest (ROW.DIGEST.SUFFIX) doesn't match it, or None."""
    parts = path.name.split(".")
    if len(parts) != 3:
        return f"{path}: not a file Lookalike names by its checksum"
    try:
        matches = sha256_file(path)[:len(parts[1])] == parts[1]
    except OSError as e:
        return f"{path}: unreadable ({e.strerror})"
    return None if matches else f"{path}: damaged (its checksum differs from its name)"


def verify(cache_root: Path, repair=False) -> list:
    """(what, problem or None, repaired) for every cache entry."""
    if repair:
        check_root(cache_root, "verify --repair")
    report = []
    for kind in STORE_KINDS:
        for folder in entries(cache_root / kind):
            store = FeatureStore(folder, {})
            for chunk, problem in store.problems():
                if repair:
                    chunk.unlink()
                report.append((f"{kind}/{folder.name}/{chunk.name}", problem, repair))
            report.append((f"{kind}/{folder.name} ({len(store.chunks())} chunks)", None, False))
    for kind in ENTRY_KINDS:
        for folder in entries(cache_root / kind):
            problem = entry_problem(folder)
            if problem and repair:
                shutil.rmtree(folder)
            report.append((f"{kind}/{folder.name}", problem, bool(problem and repair)))
    for kind in NAMED_KINDS:
        for folder in entries(cache_root / kind):
            files = entries(folder)
            for path in files:
                problem = named_problem(path)
                if problem:
                    if repair:
                        path.unlink()
                    report.append((f"{kind}/{folder.name}/{path.name}", problem, repair))
            report.append((f"{kind}/{folder.name} ({len(files)} files)", None, False))
    return report
