"""Image files of a folder, read as hostile input: a tree is walked without
following links (no loops through /proc/self), an unreadable folder or file
is skipped and counted, and a file name that is not valid UTF-8 (which Arrow
can't hold) is skipped and counted, never a traceback."""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.errors import LookalikeError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass
class Skipped:
    """What a scan left out, by reason, with an example of each."""

    counts: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)

    def add(self, reason: str, example: str):
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.examples.setdefault(reason, example)

    def warn(self, spec: str):
        for reason, count in self.counts.items():
            log.warning("catalogue %s: skipped %d %s, e.g. %s", spec, count, reason, self.examples[reason])


def printable(path) -> str:
    """A path as a message may show it (undecodable bytes escaped)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped bytes of a non-UTF-8 name
        return False
    return True


def image_files(root, skipped: Skipped, recursive=True) -> list:
    """Image files under `root` as path strings (sorted), links to folders
    not followed. Strings and directory entries, not Path objects: a
    catalogue of 100,000 files is listed in a second, not ten."""
    found, folders = [], [str(root)]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            skipped.add("unreadable folders", printable(e.filename or folder))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if recursive and _is_dir(entry):
                folders.append(entry.path)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                if not is_utf8(entry.path):
                    skipped.add("files whose names are not valid UTF-8", printable(entry.path))
                elif _is_file(entry):  # regular files (or links to them): never a FIFO that would block a read
                    found.append(entry.path)
    return sorted(found)


def hashed(paths: list, skipped: Skipped, record) -> tuple:
    """(paths that could be read, their content keys): a file that can't be
    read (permissions, an I/O error) is skipped and counted; `record` (a
    data.scan.ScanRecord) spares reading the unchanged ones."""
    kept, keys = [], []
    for path in paths:
        try:
            keys.append(record.key(path))
        except OSError as e:
            skipped.add("unreadable files", f"{printable(path)} ({e.strerror or type(e).__name__})")
            continue
        kept.append(path)
    return kept, keys


def subfolders(root: Path) -> list:
    """`root`'s visible sub-folders (sorted, links not followed), one clear
    line when `root` itself can't be listed."""
    try:
        entries = list(os.scandir(root))
    except OSError as e:
        raise LookalikeError(f"catalogue {printable(root)!r}: could not be listed "
                             f"({e.strerror or type(e).__name__})") from e
    return sorted(Path(e.path) for e in entries
                  if not e.name.startswith(".") and _is_dir(e) and is_utf8(e.name))


def _is_dir(entry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _is_file(entry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False
