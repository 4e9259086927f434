"""Write artefacts atomically (temp file in the same folder, then rename) so a
crash or Ctrl-C never leaves a half-written cache entry, index or run.

A folder is replaced only when Lookalike wrote it: every folder written by
`atomic_dir` carries a marker naming its kind (run, index, report, ...), and
a folder without the marker of that kind is refused, never deleted, even
when a user asks to overwrite it: `--output ~/photos` must not empty it."""

import fnmatch
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import LookalikeError

MARKER = ".lookalike"


@dataclass(frozen=True)
class Layout:
    """The files a kind of folder held before Lookalike marked its folders:
    such an unmarked folder is still ours when it holds `signature` and
    nothing but files named like `patterns` (a folder with anything else
    in it, such as a project checkout, is not)."""

    signature: str
    patterns: tuple

    def matches(self, folder: Path) -> bool:
        entries = list(folder.iterdir())
        return (folder / self.signature).is_file() and all(
            entry.is_file() and any(fnmatch.fnmatchcase(entry.name, p) for p in self.patterns) for entry in entries)


@contextmanager
def atomic_path(path):
    """Yield a temp path beside `path`; rename it onto `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path, obj):
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def mark(folder, kind: str):
    """Mark `folder` as a `kind` Lookalike wrote (what `marked_kind` reads)."""
    (Path(folder) / MARKER).write_text(json.dumps({"kind": kind}) + "\n")


def marked_kind(folder) -> str | None:
    """The kind of artefact Lookalike wrote in `folder`, or None when it holds no marker of ours."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker.get("kind") if isinstance(marker, dict) and isinstance(marker.get("kind"), str) else None


def check_replaceable(path, kind: str, what: str, legacy: Layout | None = None):
    """LookalikeError unless writing a `kind` folder at `path` loses nothing of
    anyone else's: it is absent, an empty folder, or a `kind` folder Lookalike
    wrote (its marker, or the `legacy` layout of older versions). `what` names
    the path in the message (e.g. "--output")."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise LookalikeError(f"{what} {path} is a file, not a folder: refusing to replace it; name a new folder")
    found = marked_kind(path)
    if found == kind or (found is None and (not any(path.iterdir()) or (legacy and legacy.matches(path)))):
        return
    holds = f"a {found} written by Lookalike, not a {kind}" if found else f"files but no {kind} written by Lookalike"
    raise LookalikeError(f"{what} {path} holds {holds}: refusing to replace them; name an empty or new folder")


@contextmanager
def atomic_dir(path, kind: str, what: str = "folder", legacy: Layout | None = None):
    """Yield a temp folder beside `path`, marked as a `kind`; it replaces `path`
    only on success, and only when `check_replaceable` allows (checked before
    the work and again before the swap). The old folder is renamed aside
    before the new one takes its place, then deleted."""
    path = Path(path)
    check_replaceable(path, kind, what, legacy)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        mark(tmp, kind)
        yield tmp
        check_replaceable(path, kind, what, legacy)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "folder")
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
