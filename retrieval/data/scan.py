"""A catalogue's scan record: for each image file, its size, modification
time and inode when it was last hashed, and the content key it had, kept in
the cache (one Arrow file per catalogue source, written atomically). A file
whose size, modification time (to the nanosecond) and inode are unchanged
is not read again, so reopening an unchanged catalogue of a million photos
reads none of their bytes; any file that differs in one of them is hashed.

What this trusts, as git's index does: that a program that changes a file's
bytes also changes its size or its modification time. Editors, copies,
downloads and image tools all do; only a deliberate `touch -d` back to the
old time after a same-size rewrite would go unseen (`--rehash` forces a full
pass). A file modified within a second of being hashed ("racily clean" in
git's words) is not recorded, so it is hashed again next time. The record's
file is named by its checksum, checked when read: a damaged record is
ignored (every file hashed again), never trusted."""

import io
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather

from retrieval.store.atomic import write_bytes
from retrieval.store.cache import entry_dir, mark_used
from retrieval.store.fingerprint import digest, file_key, short_sha

RACY_NS = 1_000_000_000  # files changed this close to the scan are hashed again next time


class ScanRecord:
    def __init__(self, cache_root, source: str, rehash: bool = False):
        """The record of one catalogue `source` (its resolved path) in the cache."""
        self.folder = entry_dir(cache_root, "scans", digest("scan", source))
        self.known = {} if rehash else _read(self.folder)
        self.seen = {}
        self.hashed = 0

    def key(self, path) -> str:
        """The content key of one file, read only when its size, time or inode changed."""
        path = str(path)
        stat = os.stat(path)
        signature = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        known = self.known.get(path)
        if known is not None and known[:3] == signature:
            key = known[3]
        else:
            key = file_key(path)
            self.hashed += 1
        self.seen[path] = (*signature, key)
        return key

    def save(self):
        """Record the files seen this time (removed ones drop out), atomically;
        a read-only cache is simply not written."""
        if not self.hashed and self.seen.keys() == self.known.keys():
            mark_used(self.folder)
            return
        settled = time.time_ns() - RACY_NS
        rows = [(p, *s) for p, s in self.seen.items() if s[1] < settled]
        table = pa.table({name: [r[i] for r in rows] for i, name in
                          enumerate(("path", "size", "mtime_ns", "inode", "key"))},
                         schema=pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                                           ("inode", pa.int64()), ("key", pa.string())]))
        buffer = io.BytesIO()
        feather.write_feather(table, buffer)
        data = buffer.getvalue()
        try:
            old = list(self.folder.glob("*.arrow"))
            name = short_sha(data)
            write_bytes(self.folder / f"{name}.arrow", data)
            for path in old:
                if path.stem != name:
                    path.unlink(missing_ok=True)
        except OSError:  # a read-only cache: the next open hashes again
            pass


def _read(folder: Path) -> dict:
    """{path: (size, mtime_ns, inode, key)}; an absent, unreadable or damaged
    record is empty (all files hashed)."""
    try:
        path = max(folder.glob("*.arrow"), key=lambda p: p.stat().st_mtime)
        data = path.read_bytes()
        if short_sha(data) != path.stem:
            return {}
        table = feather.read_table(io.BytesIO(data))
        columns = [table[c].to_pylist() for c in ("path", "size", "mtime_ns", "inode", "key")]
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return {}
    return {p: (size, mtime, inode, key) for p, size, mtime, inode, key in zip(*columns)}
