"""The one index protocol. Every backend (exact, Annoy, USearch) is built,
opened, searched in batches and changed through the same methods, and keeps
its folder under the same rules: written whole and atomically, marked as an
index, with a meta.json recording what it was built for (fingerprints),
its settings, every file's size and checksum and its own digest, all
checked before the backend reads a byte (a damaged file can crash a
memory-mapping backend)."""

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from retrieval.errors import DamagedArtefact, LookalikeError
from retrieval.store.artefacts import check, check_seal, record, seal
from retrieval.store.atomic import Layout, atomic_dir, write_json

TARGET_RECALL = 0.99  # what an approximate index is tuned to (recall@10 against exact search)
RECALL_K = 10
KIND = "index"  # the folder marker (store.atomic)
# what index folders written before folders were marked hold
LEGACY = Layout("meta.json", ("meta.json", "index.ann", "embeddings.npy", "index.usearch"))
# What every index's meta.json holds, and its type.
COMMON_META = {"backend": str, "dim": int, "n_items": int, "files": dict}


class Index(ABC):
    """The protocol: a built index over L2-normalised vectors under
    non-negative int64 keys (default: the vectors' positions); search
    returns keys. `filters_inside`: it runs `--where` filters itself
    (a vector database); the others are given the allowed keys
    (search/filtered.py)."""

    backend: ClassVar[str]
    filters_inside: ClassVar[bool] = False
    meta: dict

    def __len__(self) -> int:
        return self.meta["n_items"]

    @abstractmethod
    def summary(self) -> str:
        """One line for people: the backend and the settings its tuning chose."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where it lives, for people (a folder, a database's collection)."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, exact: bool = False):
        """(keys (m, k) int64, cosine scores (m, k) float32) of the k nearest
        items to each of the m L2-normalised `queries` (m, dim), best first;
        past the items there are, keys are -1 and scores NaN. `exact`:
        exact search among the indexed vectors."""

    @abstractmethod
    def all_keys(self) -> np.ndarray:
        """Every key in the index (int64)."""

    @abstractmethod
    def has(self, keys) -> np.ndarray:
        """Whether each of `keys` is in the index (bool array)."""

    @abstractmethod
    def vectors(self, keys) -> np.ndarray:
        """The stored (normalised) vectors of `keys`, (m, dim): an item query
        needs no backbone pass; KeyError for a key not in the index."""

    @property
    def grows_in_place(self) -> bool:
        """Whether `update` changes it in place (else a changed catalogue rebuilds it)."""
        return False

    def update(self, vectors: np.ndarray, keys, removed, meta: dict):
        """Add `vectors` under new `keys`, remove the `removed` keys, record
        `meta` (the catalogue it now reflects), saved as one change."""
        raise LookalikeError(f"a {self.backend} index is rebuilt, not changed in place")

    def check_change(self, keys: np.ndarray, removed: np.ndarray):
        """LookalikeError unless every `removed` key is in the index and no
        added key (int64 arrays) is repeated or already in it (and staying):
        what an index changed in place (`update`) checks first."""
        missing = removed[~self.has(removed)] if len(removed) else removed
        if len(missing):
            raise LookalikeError(f"keys not in the index: {missing[:5].tolist()}")
        staying = np.setdiff1d(keys, removed)
        taken = staying[self.has(staying)] if len(staying) else staying
        if len(taken) or len(np.unique(keys)) < len(keys):
            shown = taken[:5].tolist() if len(taken) else "repeated in the request"
            raise LookalikeError(f"keys already in the index: {shown}; remove them first")

    def add(self, vectors: np.ndarray, keys):
        self.update(vectors, keys, np.zeros(0, dtype=np.int64), {})

    def remove(self, keys):
        self.update(np.zeros((0, self.meta["dim"]), dtype=np.float32), np.zeros(0, dtype=np.int64), keys, {})

    @classmethod
    @abstractmethod
    def build(cls, location, vectors: np.ndarray, meta: dict, keys=None, metadata=None) -> "Index":
        """Build over `vectors` (normalised here) under `keys`, tune, save, open.
        `metadata`: the items' metadata (pyarrow Table aligned with the keys)
        for a backend that filters inside."""


class FolderIndex(Index):
    """An index in a folder of files, checked (meta.json's digest, every
    file's size and checksum) before the backend reads a byte."""

    files: ClassVar[tuple]       # the files its folder holds besides meta.json
    settings: ClassVar[dict]     # the meta.json keys it reads, and their types

    def __init__(self, folder, meta: dict, deep: bool | None = None):
        """`deep`: hash every file however large (artefacts.check)."""
        self.folder, self.meta = Path(folder), meta
        check_meta(self.folder, meta, self.settings)
        check(self.folder, meta["files"], deep=deep, required=self.files)
        self._load()

    @abstractmethod
    def _load(self):
        """Open the checked files."""

    @property
    def location(self) -> str:
        return str(self.folder)


def padded(rows: list, scores: list, k: int):
    """Per-query result lists of any length -> (m, k) arrays padded with -1 / NaN."""
    keys = np.full((len(rows), k), -1, dtype=np.int64)
    values = np.full((len(rows), k), np.nan, dtype=np.float32)
    for i, (r, s) in enumerate(zip(rows, scores)):
        keys[i, :len(r)], values[i, :len(s)] = r[:k], s[:k]
    return keys, values


def check_meta(folder: Path, meta: dict, settings: dict):
    """meta.json matches its own digest and holds the keys an index needs, of
    the types it needs: a damaged or older meta.json is a DamagedArtefact,
    not a KeyError, a TypeError or silently wrong rows later."""
    check_seal(folder / "meta.json", meta)
    wrong = [key for key, types in {**COMMON_META, **settings}.items()
             if not isinstance(meta.get(key), types) or isinstance(meta.get(key), bool)]
    if wrong:
        raise DamagedArtefact(f"{folder / 'meta.json'}: damaged or written by an older Lookalike "
                              f"(missing or invalid: {', '.join(wrong)})")


def check_fingerprints(place, meta: dict, expected: dict, record=None, elsewhere: str = "--index"):
    """A fingerprint missing from an index's record (`record`, default
    `place`/meta.json) is damage; one that differs means the index in `place`
    was built for another catalogue or model (`elsewhere`: the flag that
    points to another one)."""
    record = record or Path(place) / "meta.json"
    missing = [key for key in expected if key not in meta]
    if missing:
        raise DamagedArtefact(f"{record}: damaged or written by an older Lookalike (missing: {', '.join(missing)})")
    wrong = {k: (meta[k], v) for k, v in expected.items() if meta[k] != v}
    if wrong:
        detail = "; ".join(f"{k}: index has {a!r}, wanted {b!r}" for k, (a, b) in wrong.items())
        raise LookalikeError(
            f"index in {place} was built for another catalogue or model ({detail}). "
            "Rebuild it with `python -m retrieval index --rebuild` for this catalogue/backbone/head, "
            f"or point {elsewhere} elsewhere")


def save(folder, meta: dict, write_files) -> dict:
    """Write an index folder atomically: `write_files(tmp)` writes its files,
    then meta.json with their record and its own digest. Returns that meta."""
    with atomic_dir(folder, KIND, "--index", LEGACY) as tmp:
        names = write_files(Path(tmp))
        meta = seal(dict(meta, files=record(tmp, names)))
        write_json(Path(tmp) / "meta.json", meta)
    return meta


def keys_of(keys, n: int | None = None) -> np.ndarray:
    """Keys as int64, refusing negative ones or the wrong count."""
    keys = np.atleast_1d(np.asarray(keys))
    if keys.dtype.kind not in "iu" or (keys < 0).any() or (n is not None and len(keys) != n):
        raise LookalikeError("keys must be one non-negative integer per vector" + (f" ({n} vectors)" if n else ""))
    return keys.astype(np.int64)
