"""A shop's product list as a catalogue: a CSV, JSONL or parquet file with one
item per row. `image` is a path relative to the manifest's folder, an
absolute path, image bytes (parquet) or an http(s) URL (fetched once into
the cache when online; offline such rows are skipped and counted). `id` is
optional (default: the image path without its suffix); the class is the
`label` column or `--label-column NAME` (none is fine); every other column
is metadata, typed integer, float, boolean or string (empty = missing)."""

import collections
import csv
import hashlib
import io
import json
import logging
from pathlib import Path
from urllib.parse import urlparse

from retrieval.data.catalogue import Catalogue, make_dataset
from retrieval.data.files import Skipped, hashed, printable
from retrieval.errors import LookalikeError
from retrieval.hub import offline
from retrieval.store.fingerprint import content_key, digest

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".jsonl", ".parquet")
MAX_FIELD = 10_000_000  # csv's own limit is 128 KB; image bytes never come through CSV anyway
BOOLEANS = {"true": True, "false": False, "yes": True, "no": False}


def detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SUFFIXES


def read(spec: str, path: Path, label_column: str | None, downloads: Path | None, record) -> Catalogue:
    rows = _rows(spec, path)
    if not rows:
        raise LookalikeError(f"catalogue {spec!r}: the manifest has no rows")
    columns = list(rows[0])
    if "image" not in columns:
        raise LookalikeError(f"catalogue {spec!r}: the manifest needs an `image` column; it has "
                             f"{', '.join(columns[:20])}")
    label = label_column or ("label" if "label" in columns else None)
    if label is not None and label not in columns:
        raise LookalikeError(f"catalogue {spec!r}: no column {label!r} for --label-column; it has "
                             f"{', '.join(columns[:20])}")
    skipped = Skipped()
    images, keys, kept = _images(rows, path.parent, downloads, skipped, record)
    skipped.warn(spec)
    if not kept:
        raise LookalikeError(f"catalogue {spec!r}: none of its {len(rows)} rows has an image that can be read")
    rows = [rows[i] for i in kept]
    ids = [_id(row, image) for row, image in zip(rows, images)]
    repeated = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
    if repeated:
        raise LookalikeError(f"catalogue {spec!r}: ids must be unique; repeated: {', '.join(repeated[:5])}")
    labels, names = _labels([row.get(label) for row in rows]) if label else (None, [])
    metadata = typed({c: [row.get(c) for row in rows] for c in columns if c not in ("image", "id", label)})
    fp = digest("manifest", keys, ids, names, labels, {c: v for c, (_, v) in metadata.items()})
    return Catalogue(spec, make_dataset(images, labels, ids, names, metadata), fp, item_keys=keys)


def _rows(spec: str, path: Path) -> list:
    """The manifest's rows as dicts (values: strings, numbers, booleans, bytes or None)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8-sig")
        if suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            if not all(isinstance(row, dict) for row in rows):
                raise ValueError("every line must be a JSON object")
            return rows
        csv.field_size_limit(MAX_FIELD)
        return [{k: (v if v != "" else None) for k, v in row.items() if k is not None}
                for row in csv.DictReader(io.StringIO(text))]
    except (OSError, UnicodeDecodeError, ValueError, csv.Error, RecursionError) as e:
        raise LookalikeError(f"catalogue {spec!r}: the manifest can't be read ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:120]})") from e
    except Exception as e:  # pyarrow's errors for a file that isn't parquet
        raise LookalikeError(f"catalogue {spec!r}: not a readable parquet manifest ({type(e).__name__})") from e


def _images(rows: list, base: Path, downloads: Path | None, skipped: Skipped, record) -> tuple:
    """(images as paths or {'bytes', 'path'}, content keys, rows kept)."""
    images, keys, kept = [], [], []
    for i, row in enumerate(rows):
        value = row.get("image")
        if isinstance(value, dict):  # parquet written by datasets: {'bytes', 'path'}
            value = value.get("bytes") or value.get("path")
        if isinstance(value, (bytes, bytearray)) and value:
            images.append({"bytes": bytes(value), "path": None})
            keys.append(content_key(bytes(value)))
            kept.append(i)
            continue
        if not isinstance(value, str) or not value.strip():
            skipped.add("rows without an image", f"row {i + 1}")
            continue
        path = _fetched(value.strip(), downloads, skipped) if _is_url(value) else _local(value.strip(), base)
        if path is None:
            continue
        if not path.is_file():
            skipped.add("rows whose image file is missing", printable(path))
            continue
        found, key = hashed([path], skipped, record)
        if found:
            images.append(str(path))
            keys += key
            kept.append(i)
    return images, keys, kept


def _local(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _is_url(value) -> bool:
    return isinstance(value, str) and urlparse(value.strip()).scheme in ("http", "https")


def _fetched(url: str, downloads: Path | None, skipped: Skipped) -> Path | None:
    """The URL's file, fetched once into `downloads`; None (counted) when it
    can't be had: offline, unreachable, too large."""
    from retrieval.data.images import MAX_BYTES

    target = (downloads or Path()) / hashlib.sha256(url.encode()).hexdigest()[:32]
    if target.is_file():
        return target
    if downloads is None or offline():
        skipped.add("rows with an image URL (offline: not fetched)", url[:80])
        return None
    try:
        import httpx

        with httpx.stream("GET", url, timeout=30, follow_redirects=True) as response:
            response.raise_for_status()
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_BYTES:
                    raise ValueError("larger than the image size limit")
    except Exception as e:  # network, HTTP status, size: the row is skipped, the catalogue loads
        skipped.add("rows whose image URL could not be fetched", f"{url[:80]} ({type(e).__name__})")
        return None
    from retrieval.store.atomic import write_bytes

    write_bytes(target, data)
    return target


def _id(row: dict, image) -> str:
    given = row.get("id")
    if given is not None and str(given).strip():
        return str(given).strip()
    path = image if isinstance(image, str) else None
    return str(Path(path).with_suffix("")) if path else f"row-{content_key(image['bytes'])[:12]}"


def _labels(values: list) -> tuple:
    """(label ids, class names): classes in sorted order; a row without a class is 'unlabelled'."""
    text = ["(no label)" if v is None or str(v).strip() == "" else str(v).strip() for v in values]
    names = sorted(set(text))
    index = {n: i for i, n in enumerate(names)}
    return [index[t] for t in text], names


def typed(columns: dict) -> dict:
    """{column: (type, values)}: integer when every present value is a whole
    number, else float when every one is a number, else boolean when every
    one is true/false/yes/no, else string; None for missing."""
    return {name: _typed(values) for name, values in columns.items()}


def _typed(values: list) -> tuple:
    missing = [v is None or (isinstance(v, str) and not v.strip()) for v in values]
    for kind, convert in (("boolean", _boolean), ("integer", _integer), ("float", _float)):
        try:
            return kind, [None if gone else convert(v) for v, gone in zip(values, missing)]
        except (ValueError, TypeError, OverflowError):
            continue
    return "string", [None if gone else str(v) for v, gone in zip(values, missing)]


def _boolean(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in BOOLEANS:
        return BOOLEANS[value.strip().lower()]
    raise ValueError(value)


def _integer(value) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    number = int(str(value).strip())
    if not -2**63 <= number < 2**63:
        raise OverflowError(value)
    return number


def _float(value) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)
