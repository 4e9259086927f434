"""The cache root: one folder per fingerprint, each with a `meta.json` of what
produced it, written atomically. Location: --cache-dir, else $LOOKALIKE_CACHE,
else the user cache dir (~/.cache/lookalike on Linux)."""

import json
import os
from pathlib import Path

from platformdirs import user_cache_dir


def cache_root(explicit=None) -> Path:
    root = explicit or os.environ.get("LOOKALIKE_CACHE") or user_cache_dir("lookalike")
    return Path(root).expanduser()


def entry_dir(root, kind: str, fingerprint: str) -> Path:
    return Path(root) / kind / fingerprint


def read_meta(folder) -> dict | None:
    """The entry's metadata, or None when the entry is absent or incomplete."""
    path = Path(folder) / "meta.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
