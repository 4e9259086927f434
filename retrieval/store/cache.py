"""The cache root: one folder per fingerprint, each with a `meta.json` of what
produced it, written atomically. Location: --cache-dir, else $LOOKALIKE_CACHE,
else the user cache dir (~/.cache/lookalike on Linux)."""

import contextlib
import json
import os
from pathlib import Path

from platformdirs import user_cache_dir

from retrieval.errors import DamagedArtefact


def cache_root(explicit=None) -> Path:
    root = explicit or os.environ.get("LOOKALIKE_CACHE") or user_cache_dir("lookalike")
    return Path(root).expanduser()


def entry_dir(root, kind: str, fingerprint: str) -> Path:
    return Path(root) / kind / fingerprint


def entries(folder, unfinished=False) -> list:
    """The entries of one kind's folder, sorted; a dot-name is an unfinished
    atomic write, listed only with `unfinished`."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if unfinished or not p.name.startswith("."))


def mark_used(path) -> None:
    """Record that a cache entry or feature chunk was used just now: its
    modification time is its last use, which `prune` reads. Nothing else reads
    it. A read-only cache is simply not marked."""
    with contextlib.suppress(OSError):
        os.utime(path)


def read_meta(folder) -> dict | None:
    """The entry's metadata; None when there is no entry (entries are renamed
    into place whole, so a missing meta.json means none was finished);
    DamagedArtefact when it is there but can't be read as a JSON object, so
    that a damaged entry is never mistaken for an absent one."""
    path = Path(folder) / "meta.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: absurdly nested JSON
        raise DamagedArtefact(f"{path}: damaged ({type(e).__name__}: {_one_line(e)})") from e
    if not isinstance(meta, dict):
        raise DamagedArtefact(f"{path}: damaged (not a JSON object)")
    return meta


def _one_line(error) -> str:
    return " ".join(str(error).split())
