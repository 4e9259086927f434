"""Stable short hashes naming cache entries (like `datasets`' fingerprints):
an artefact is recomputed only when something it was made from changes."""

import hashlib
import json
import os


def digest(*parts) -> str:
    """Hash JSON-able parts (dicts, lists, strings, numbers) to 16 hex chars."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def files_digest(paths) -> str:
    """Hash file names, sizes and modification times (cheap, like make)."""
    entries = []
    for p in paths:
        st = os.stat(p)
        entries.append((os.path.basename(p), st.st_size, st.st_mtime_ns))
    return digest(entries)
