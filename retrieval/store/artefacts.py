"""What was written, checked when it is read: every cache entry, index and
run records the size and SHA-256 of its files when it is written (in its
meta.json or config.json), and is checked against that record when opened.
A truncated or bit-flipped file is then a DamagedArtefact (rebuilt when it
is a cache entry, refused when it is a file the user named), never a
segfault in a memory-mapped index or silently wrong scores.

The messages say what is wrong with which file; what to do about it
(rebuild, recompute, retrain) is the caller's to add, as only it knows."""

import hashlib
import json
from pathlib import Path, PurePosixPath

from retrieval.errors import DamagedArtefact

# Files up to this size are hashed every time they are opened: SHA-256 runs
# at ~1 GB/s, so that costs at most ~0.25 s, small beside loading a model.
# Larger ones (indexes of millions of items) get only their size checked on
# open, which catches truncation, and their checksum by
# `python -m retrieval verify` and when they are in an index folder the user
# named (deep=True: such a folder is refused when damaged, never rebuilt).
HASH_ON_OPEN_BYTES = 256 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024


def sha256_file(path) -> str:
    """Hex SHA-256 of a file, read in chunks: files can be larger than memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def disk_bytes(path) -> int:
    """Bytes a file, or every file under a folder, takes."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def record(folder, names) -> dict:
    """{name: {"bytes": size, "sha256": digest}} of files in `folder`: call it
    on the temp folder just before it is renamed into place, and store it."""
    folder = Path(folder)
    return {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
            for name in names}


def problems(folder, files, deep: bool | None = None, required=()) -> list:
    """One line per file that doesn't match its record (empty when all do):
    missing, another size (always compared), another checksum (compared when
    `deep`, or when `deep` is None and the file is small enough to hash on
    every open). `required` names files the record must list: a damaged
    record must not hide one from the check."""
    folder = Path(folder)
    if not isinstance(files, dict) or not files:
        return [f"{folder}: no record of its files' sizes and checksums (written by an older Lookalike, "
                f"or its metadata is damaged)"]
    found = [f"{folder / name}: not in the record of its files (damaged metadata)"
             for name in required if name not in files]
    for name, expected in files.items():
        problem = _file_problem(folder, name, expected, deep)
        if problem:
            found.append(problem)
    return found


def check(folder, files, deep: bool | None = None, required=()):
    """Raise DamagedArtefact, one line naming each damaged file, unless every
    recorded file matches its record (see `problems`)."""
    found = problems(folder, files, deep, required)
    if found:
        raise DamagedArtefact("; ".join(found))


def _file_problem(folder: Path, name, expected, deep) -> str | None:
    """What is wrong with one recorded file, or None."""
    if not _is_inside(name) or not _is_entry(expected):
        return f"{folder}: damaged record of its files (entry {name!r})"
    path = folder / name
    try:
        size = path.stat().st_size
    except OSError:
        return f"{path}: missing"
    if size != expected["bytes"]:
        return f"{path}: damaged (size {size} bytes, written as {expected['bytes']}: truncated or overwritten)"
    hashed = deep or (deep is None and size <= HASH_ON_OPEN_BYTES)
    if hashed and sha256_file(path) != expected["sha256"]:
        return f"{path}: damaged (its checksum differs from the one recorded when it was written)"
    return None


def _is_inside(name) -> bool:
    """A relative path below the folder: a record never points elsewhere."""
    if not isinstance(name, str) or not name or "\\" in name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts


def _is_entry(expected) -> bool:
    return (isinstance(expected, dict) and type(expected.get("bytes")) is int
            and isinstance(expected.get("sha256"), str))


SEAL = "record_sha256"


def seal(meta: dict) -> dict:
    """`meta` with the digest of its own contents: a metadata file's record
    of itself, so an edited meta.json (a row or a fingerprint changed, the
    record of the other files rewritten) is as damaged as an edited index."""
    body = {key: value for key, value in meta.items() if key != SEAL}
    return dict(body, **{SEAL: _digest(body)})


def check_seal(path, meta: dict):
    """DamagedArtefact unless `meta` (read from `path`) matches its own digest."""
    body = {key: value for key, value in meta.items() if key != SEAL}
    if SEAL not in meta:
        raise DamagedArtefact(f"{path}: damaged or written by an older Lookalike (no digest of its contents)")
    if meta[SEAL] != _digest(body):
        raise DamagedArtefact(f"{path}: damaged (its contents differ from the digest recorded when it was written)")


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
