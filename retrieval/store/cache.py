"""The cache root: one folder per fingerprint, each with a `meta.json` of what
produced it, written atomically. Location: --cache-dir, else $LOOKALIKE_CACHE,
else the user cache dir (~/.cache/lookalike on Linux)."""

import contextlib
import json
import os
from pathlib import Path

from platformdirs import user_cache_dir

from retrieval.errors import DamagedArtefact, LookalikeError

TAG = "CACHEDIR.TAG"  # the standard cache-directory tag (bford.info/cachedir): backups skip it
TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
            "# This file is a cache directory tag created by Lookalike (python -m retrieval).\n")


def cache_root(explicit=None) -> Path:
    """--cache-dir, else $LOOKALIKE_CACHE, else the user cache dir; a path
    that names a file is refused."""
    root = Path(explicit or os.environ.get("LOOKALIKE_CACHE") or user_cache_dir("lookalike")).expanduser()
    if root.exists() and not root.is_dir():
        raise LookalikeError(f"--cache-dir {root} is a file, not a folder; name a folder for the cache")
    return root


def tag_root(root):
    """Mark `root` as a Lookalike cache (when it can be written)."""
    path = Path(root) / TAG
    if not path.is_file():
        with contextlib.suppress(OSError):
            Path(root).mkdir(parents=True, exist_ok=True)
            path.write_text(TAG_TEXT)


def check_root(root, command: str):
    """LookalikeError unless `root` is a cache Lookalike wrote: commands that
    delete (prune, verify --repair) delete nothing in any other folder."""
    if not (Path(root) / TAG).is_file():
        raise LookalikeError(f"{root} is not a Lookalike cache (no {TAG}): {command} removes nothing there. "
                             "A cache gets its tag when a Lookalike command writes to it")


def entry_dir(root, kind: str, fingerprint: str) -> Path:
    """Where an entry lives; the root is tagged as a Lookalike cache as entries are made in it."""
    tag_root(root)
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
