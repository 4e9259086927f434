"""Per-item feature store: what a backbone made of each image, kept per image
content key (fingerprint.content_key) for one embedder's features
fingerprint, in chunk files written while extraction goes.

A catalogue's features are looked up by its items' keys, so adding or
changing N images computes only those N, removed images are simply never
read, a subset (--classes, per_class) reuses its source's features, and a
killed extraction resumes from its last chunk.

A chunk is one `.npz` (item keys + one array per output) named
`<sequence>-<sha256 prefix>.npz` and renamed into place whole: its name is
its checksum, verified each time it is read. A damaged chunk is deleted and
its items computed again: the store is a cache."""

import io
import logging
import zipfile
from pathlib import Path

import numpy as np

from retrieval.errors import DamagedArtefact
from retrieval.store.artefacts import sha256_file
from retrieval.store.atomic import write_bytes, write_json
from retrieval.store.cache import entry_dir, mark_used
from retrieval.store.fingerprint import digest, short_sha

log = logging.getLogger(__name__)

CHUNK_SUFFIX = ".npz"
HASH_CHARS = 16


class FeatureStore:
    """The chunks of one (kind, embedder features fingerprint, extra) in one folder."""

    def __init__(self, folder, produced_by: dict):
        self.folder, self.produced_by = Path(folder), produced_by

    @classmethod
    def for_embedder(cls, cache_root, kind: str, embedder, extra=()) -> "FeatureStore":
        folder = entry_dir(cache_root, kind, digest(kind, embedder.features_fingerprint, *extra))
        return cls(folder, {"kind": kind, "embedder": embedder.backbone.config(),
                            "views": list(embedder.views), "extra": list(extra)})

    def chunks(self) -> list:
        return sorted(self.folder.glob(f"*{CHUNK_SUFFIX}"))

    def locations(self) -> dict:
        """{key: (chunk path, position)} of every stored item. Reads only the
        keys of each chunk; a chunk whose keys can't be read is dropped."""
        where = {}
        for chunk in self.chunks():
            try:
                with np.load(chunk, allow_pickle=False) as data:
                    keys = data["keys"].tolist()
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                self._drop(chunk, e)
                continue
            for position, key in enumerate(keys):
                where.setdefault(key, (chunk, position))
        return where

    def read(self, keys: list, where: dict) -> dict:
        """{name: array (len(keys), ...)} for `keys` (all in `where`), each
        chunk read once and checked against its name. DamagedArtefact (after
        dropping the chunk) when one doesn't match: the caller recomputes."""
        by_chunk = {}
        for i, key in enumerate(keys):
            chunk, position = where[key]
            by_chunk.setdefault(chunk, ([], []))
            by_chunk[chunk][0].append(i)
            by_chunk[chunk][1].append(position)
        out = {}
        for chunk, (targets, positions) in by_chunk.items():
            mark_used(chunk)
            for name, array in self._load(chunk).items():
                if name == "keys":
                    continue
                if name not in out:
                    out[name] = np.empty((len(keys), *array.shape[1:]), dtype=array.dtype)
                out[name][targets] = array[positions]
        return out

    def mark_used(self, keys: list):
        """Mark the chunks holding `keys` as used now (`prune` keeps them)."""
        where = self.locations()
        for chunk in {where[key][0] for key in keys if key in where}:
            mark_used(chunk)

    def write(self, keys: list, arrays: dict, where: dict):
        """Store one chunk: `keys` and, for each output, its rows in that order;
        `where` (a `locations()`) learns where they are, so that it need not be
        read from every chunk again."""
        if not (self.folder / "meta.json").is_file():
            write_json(self.folder / "meta.json", self.produced_by)
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.asarray(keys, dtype=str), **arrays)
        data = buffer.getvalue()
        chunk = self.folder / f"{len(self.chunks()):06d}-{short_sha(data, HASH_CHARS)}{CHUNK_SUFFIX}"
        write_bytes(chunk, data)
        for position, key in enumerate(keys):
            where.setdefault(key, (chunk, position))

    def problems(self) -> list:
        """(chunk, what is wrong) for each chunk whose bytes don't match its name (for `verify`)."""
        return [(chunk, f"{chunk}: damaged (its checksum differs from its name)") for chunk in self.chunks()
                if sha256_file(chunk)[:HASH_CHARS] != _named_sha(chunk)]

    def _load(self, chunk: Path) -> dict:
        try:
            data = chunk.read_bytes()
            problem = None if short_sha(data, HASH_CHARS) == _named_sha(chunk) else "its checksum differs from its name"
            if problem is None:
                with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                    return {name: arrays[name] for name in arrays.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            problem = f"{type(e).__name__}: {e}"
        self._drop(chunk, problem)
        raise DamagedArtefact(f"{chunk}: damaged ({problem})")

    def _drop(self, chunk: Path, error):
        log.warning("feature store chunk %s is damaged (%s): its items will be computed again", chunk, error)
        chunk.unlink(missing_ok=True)


def _named_sha(chunk: Path) -> str:
    return chunk.stem.rpartition("-")[2]
