"""Who is writing to a cache, so that `prune` never removes what a running
command is writing or has just written, and two commands never extract the
same features at once.

Locks, not only a grace period: an extraction can run for hours, longer than
any grace period would be, and a lock ends exactly when its holder does
(the kernel releases it if the process is killed). Every command that
extracts features or builds an index holds the cache root's lock shared;
`prune` takes it exclusively, so it waits for them to finish. A feature
store's own lock is exclusive: a second command extracting into the same
store waits, then finds the first one's features stored and extracts none."""

import fcntl
import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path

from retrieval.store.cache import tag_root

log = logging.getLogger(__name__)

LOCKS = "locks"  # the cache root's folder of lock files
ROOT_LOCK = "cache.lock"
_held = {}  # lock file -> [fd, holders] of this process's shared locks
_guard = threading.Lock()


@contextmanager
def writing(cache_root):
    """Held (shared) while a command writes cache entries; nested holds share one lock."""
    path = str(Path(cache_root) / LOCKS / ROOT_LOCK)
    with _guard:
        if path not in _held:
            tag_root(cache_root)
            fd = _open(Path(path))
            _wait(fd, fcntl.LOCK_SH, f"waiting for `prune` to finish with {cache_root}")
            _held[path] = [fd, 0]
        _held[path][1] += 1
    try:
        yield
    finally:
        with _guard:
            _held[path][1] -= 1
            if not _held[path][1]:
                _close(_held.pop(path)[0])  # closing releases the lock


@contextmanager
def exclusive(cache_root, name: str, waiting: str):
    """Held alone: by `prune` on the whole cache (ROOT_LOCK), by an extraction on its store's name."""
    fd = _open(Path(cache_root) / LOCKS / name)
    try:
        _wait(fd, fcntl.LOCK_EX, waiting)
        yield
    finally:
        _close(fd)


def _open(path: Path) -> int | None:
    """A lock file, opened (made when missing); None where the cache can't be
    written at all (read-only), where nobody can change it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:
            return os.open(str(path), os.O_RDONLY)
        except OSError:
            return None


def _close(fd: int | None):
    if fd is not None:
        os.close(fd)


def _wait(fd: int | None, kind: int, waiting: str):
    """Take the lock, saying once why when it means waiting."""
    if fd is None:
        return
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("%s", waiting)
        fcntl.flock(fd, kind)
