"""Stable short hashes naming cache entries (like `datasets`' fingerprints):
an artefact is recomputed only when something it was made from changes."""

import hashlib
import json
import os

from retrieval.store.artefacts import sha256_file

KEY_CHARS = 32  # 128 bits of SHA-256
SHORT_CHARS = 16  # a checksum carried in a file's name


def digest(*parts) -> str:
    """Hash JSON-able parts (dicts, lists, strings, numbers) to 16 hex chars."""
    return short_sha(json.dumps(parts, sort_keys=True, default=str).encode())


def short_sha(data: bytes, chars: int = SHORT_CHARS) -> str:
    """The first `chars` hex characters of the bytes' SHA-256: the checksum a
    feature chunk, scan record or thumbnail carries in its file name."""
    return hashlib.sha256(data).hexdigest()[:chars]


def content_key(data: bytes) -> str:
    """Names one item by its bytes (128 bits of SHA-256): the feature store's
    key, so a renamed, moved or re-ordered image keeps its stored features."""
    return hashlib.sha256(data).hexdigest()[:KEY_CHARS]


def file_key(path) -> str:
    """content_key of one file, read from disk."""
    return sha256_file(path)[:KEY_CHARS]


def file_keys(paths) -> list:
    """content_key of each file; hashing the 4,052 car thumbnails takes 0.25 s."""
    return [file_key(p) for p in paths]


def files_digest(paths) -> str:
    """Hash file names and contents (of a catalogue's source files). Not
    modification times: a copied or re-checked-out catalogue (new mtimes, same
    bytes) keeps its cached index."""
    total = hashlib.sha256()
    for p in paths:
        total.update(os.path.basename(p).encode() + b"\0" + bytes.fromhex(sha256_file(p)))
    return total.hexdigest()[:16]
