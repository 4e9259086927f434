"""`python -m retrieval prune --unused-for DAYS`: delete what the cache holds
but nothing has used for DAYS days.

A catalogue that changes every day leaves behind, each day, the index of its
previous version (hundreds of MB at 100,000 items) and the feature chunks of
images it no longer has; no run reads them again, and the cache grows without
end. Every use marks what it read (cache.mark_used: an index opened, a chunk
read, a converted network loaded, a catalogue's thumbnails shown), so a
catalogue indexed or served within DAYS keeps everything it reads, and the
next run rebuilds nothing. A chunk goes only when none of its images was read:
the features of a removed image stay while its chunk holds images still in use.
Unfinished writes a killed run left behind (dot-names) go by the same rule.

A server running longer than DAYS without a restart keeps serving an index
pruned under it (its files stay mapped until it exits) and rebuilds it on
the next start: prune with DAYS longer than your servers run, or restart them.
"""

import shutil
import time
from pathlib import Path

from retrieval.store.artefacts import disk_bytes
from retrieval.store.cache import check_root, entries
from retrieval.store.locks import ROOT_LOCK, exclusive
from retrieval.store.verify import STORE_KINDS

ENTRY_KINDS = ("indexes", "openvino", "thumbnails", "scans")  # pruned whole, by the entry folder's last use
DAY = 86_400
# Whatever was used in the last GRACE seconds is kept whatever DAYS says: a
# command that just finished wrote it, and its next run would make it again.
GRACE = 600


def prune(cache_root: Path, unused_for_days: float, dry_run=False) -> list:
    """(path relative to the cache root, bytes) of everything removed (or, with
    `dry_run`, that would be), oldest use first."""
    check_root(cache_root, "prune")
    with exclusive(cache_root, ROOT_LOCK, f"waiting for the Lookalike commands writing to {cache_root} to finish"):
        return _prune(cache_root, time.time() - max(unused_for_days * DAY, GRACE), dry_run)


def _prune(cache_root: Path, cutoff: float, dry_run: bool) -> list:
    stale = [entry for kind in ENTRY_KINDS for entry in entries(cache_root / kind, unfinished=True)
             if entry.stat().st_mtime < cutoff]
    emptied = []
    for kind in STORE_KINDS:
        for store in entries(cache_root / kind, unfinished=True):
            if store.is_file() or store.name.startswith("."):  # an unfinished store or a stray file
                stale += [store] if store.stat().st_mtime < cutoff else []
                continue
            chunks = [chunk for chunk in store.iterdir() if chunk.name != "meta.json"]
            unused = [chunk for chunk in chunks if chunk.stat().st_mtime < cutoff]
            stale += unused
            if unused and len(unused) == len(chunks):
                emptied.append(store)  # nothing left in it: the store's folder goes too
    stale.sort(key=lambda path: path.stat().st_mtime)
    removed = [(str(path.relative_to(cache_root)), disk_bytes(path)) for path in stale]
    if not dry_run:
        for path in stale:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        for store in emptied:
            shutil.rmtree(store, ignore_errors=True)
    return removed
