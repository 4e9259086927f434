"""Tables of images: parquet files (a file, or every `*.parquet` under a
folder) and Hugging Face Hub datasets, mapped onto the schema from their
image column and their label column."""

from pathlib import Path

import datasets

from retrieval.data.catalogue import Catalogue, make_dataset
from retrieval.errors import LookalikeError
from retrieval.store.fingerprint import digest, files_digest

LABEL_COLUMNS = ("label", "labels", "class", "fine_label")
# datasets' plain column types kept as metadata, by the type --where knows them as
KINDS = {**dict.fromkeys(("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"), "integer"),
         **dict.fromkeys(("float16", "float32", "float64"), "float"), "bool": "boolean",
         "string": "string", "large_string": "string"}


def detect(path: Path) -> bool:
    return path.is_dir() and any(path.rglob("*.parquet"))


def has_image_feature(path: Path) -> bool:
    """Whether a parquet file's image column is a datasets Image (written by
    `datasets`): read as a table; otherwise it is a manifest."""
    try:
        import pyarrow.parquet as pq

        features = datasets.Features.from_arrow_schema(pq.read_schema(path))
    except Exception:  # not parquet at all: the manifest reader says so in one line
        return False
    return any(isinstance(f, datasets.Image) for f in features.values())


def read(spec: str, path: Path, split=None, record=None) -> Catalogue:
    """The layout's read (catalogues.LAYOUTS); a parquet catalogue has no splits here and no scan record."""
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    try:
        ds = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    except Exception as e:  # not parquet, truncated, unreadable: pyarrow and datasets raise many types
        raise LookalikeError(f"catalogue {spec!r}: not a readable parquet file ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:120]})") from e
    return normalised(spec, ds, digest("parquet", files_digest(files)))


def read_hub(spec: str, name: str, split: str) -> Catalogue:
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # offline, unknown repo, unknown split: all one message
        raise LookalikeError(f"catalogue {spec!r}: could not load {name!r} split {split!r} "
                             f"from the Hugging Face Hub ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e
    return normalised(spec, ds, digest("hub", name, split, ds._fingerprint))


def normalised(spec: str, ds: datasets.Dataset, fingerprint: str) -> Catalogue:
    """Map any dataset with an image column onto the schema: its class
    column (a ClassLabel, or one named like a label) when it has one, its
    other plain columns as metadata."""
    image_col = next((c for c, f in ds.features.items() if isinstance(f, datasets.Image)), None)
    label_col = next((c for c, f in ds.features.items() if isinstance(f, datasets.ClassLabel)), None)
    if label_col is None:
        label_col = next((c for c in LABEL_COLUMNS if c in ds.features), None)
    if image_col is None:
        raise LookalikeError(f"catalogue {spec!r}: needs an image column; found {list(ds.features)[:20]}")
    labels, names = None, []
    if label_col is not None:
        label_feature = ds.features[label_col]
        if isinstance(label_feature, datasets.ClassLabel):
            names, labels = label_feature.names, ds[label_col]
        else:
            values = ds[label_col]
            names = sorted({str(v) for v in values}, key=lambda s: (len(s), s))
            index = {n: i for i, n in enumerate(names)}
            labels = [index[str(v)] for v in values]
    ids = [str(v) for v in ds["id"]] if "id" in ds.features else [f"{i:06d}" for i in range(len(ds))]
    metadata = {c: (KINDS[f.dtype], ds[c]) for c, f in ds.features.items()
                if c not in (image_col, label_col, "id") and isinstance(f, datasets.Value) and f.dtype in KINDS}
    images = ds.cast_column(image_col, datasets.Image(decode=False))[image_col]
    return Catalogue(spec, make_dataset(images, labels, ids, names, metadata), fingerprint)
