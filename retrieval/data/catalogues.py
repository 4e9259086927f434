"""Catalogues: one spec string -> one `datasets.Dataset` schema (catalogue.py),
through one reader per source (as timm keeps one builder per model):

- `hub:OWNER/NAME[:SPLIT]`  Hugging Face Hub dataset (default split `train`)
- `fashion-mnist[:SPLIT]`   Debian's dataset-fashion-mnist if installed, else the Hub copy
                            (split `test` (10k, default), `train` (60k) or `all`)
- `FILE.csv|.jsonl|.parquet`: a manifest, one item per row (manifest.py); a
  parquet file whose image column is a datasets Image is read as a table
- `DIR[:SPLIT]`, with the layout detected:
    * Stanford Cars original (`cars_train/`, `devkit/cars_train_annos.mat`, `devkit/cars_meta.mat`)
    * Fashion-MNIST idx files (`*-ubyte.gz`)
    * parquet files (`*.parquet`, with an image column and a label column)
    * folders of images: flat (`DIR/*.jpg`, no classes) or class folders (`DIR/<class name>/*.jpg|png|...`)

A path that exists is always read as that path: `/data/cat:v2` is the folder
`cat:v2` when there is one, and `/data/cat` split `v2` only when there isn't.
Class numbers (`classes="1-49,60"`) follow the source's own numbering
(subsets.py)."""

import re
from pathlib import Path

from retrieval.data import idx_files, image_folders, manifest, stanford_cars, tables
from retrieval.data.catalogue import Catalogue
from retrieval.data.files import printable
from retrieval.data.scan import ScanRecord
from retrieval.data.subsets import first_per_class, select_classes
from retrieval.errors import LookalikeError
from retrieval.store.cache import cache_root
from retrieval.store.fingerprint import digest

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_HUB = "zalando-datasets/fashion_mnist"
# Folder layouts, tried in this order (the first that recognises the folder reads it); each module has
# detect(path) and read(spec, path, split, record), ignoring what it has no use for
LAYOUTS = (("Stanford Cars (cars_train/ + devkit/)", stanford_cars),
           ("Fashion-MNIST *-ubyte.gz files", idx_files),
           ("parquet files", tables),
           ("folders of images (DIR/*.jpg, or class folders DIR/<class>/*.jpg)", image_folders))
MAX_SPEC = 4096


def load_catalogue(spec: str, classes: str | None = None, per_class: int | None = None,
                   label_column: str | None = None, cache_dir=None, rehash: bool = False) -> Catalogue:
    """Load a catalogue from its spec, optionally keeping only some classes
    and at most `per_class` images of each (small demo catalogues);
    `label_column`: a manifest's class column; `cache_dir`: where the scan
    record (data/scan.py) is kept and a manifest's image URLs are fetched
    to; `rehash`: read every image file again."""
    spec = spec.strip()
    if not spec or len(spec) > MAX_SPEC:
        raise LookalikeError("the catalogue spec is empty" if not spec else
                             f"the catalogue spec is {len(spec):,} characters long: not a catalogue")
    catalogue = _read(spec, label_column, cache_dir, rehash)
    if classes:
        catalogue = select_classes(catalogue, classes)
    if per_class is not None:
        catalogue = first_per_class(catalogue, per_class)
    catalogue.source = digest("source", _resolved(spec), classes, per_class, label_column)
    if len(catalogue) == 0:
        raise LookalikeError(f"catalogue {printable(spec)!r} has no images"
                             + (f" in classes {classes}" if classes else ""))
    return catalogue


def _resolved(spec: str) -> str:
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def _read(spec: str, label_column=None, cache_dir=None, rehash=False) -> Catalogue:
    if spec.startswith("hub:"):
        name, split = _split_suffix(spec[4:], default="train")
        return tables.read_hub(spec, name, split)
    if Path(spec).expanduser().exists():
        base, split = spec, None  # an existing path wins over a :SPLIT reading
    else:
        base, split = _split_suffix(spec, default=None)
    if base == "fashion-mnist":
        if idx_files.detect(FASHION_MNIST_DIR):
            return idx_files.read(spec, FASHION_MNIST_DIR, split)
        return tables.read_hub(spec, FASHION_MNIST_HUB, split or "test")
    path = Path(base).expanduser()
    if not path.exists():
        raise LookalikeError(f"catalogue {printable(spec)!r}: no such folder or file. Expected a folder, a .parquet "
                             "file, 'fashion-mnist' or 'hub:OWNER/NAME[:SPLIT]'")
    record = ScanRecord(cache_root(cache_dir), str(path.resolve()), rehash)
    try:
        if manifest.detect(path) and not (path.suffix == ".parquet" and tables.has_image_feature(path)):
            catalogue = manifest.read(spec, path, label_column, cache_root(cache_dir) / "downloads", record)
        elif label_column:
            raise LookalikeError(f"--label-column is for CSV, JSONL and parquet manifests, not {printable(spec)!r}")
        else:
            catalogue = _read_path(spec, path, split, record)
    except (OSError, RecursionError) as e:  # a folder the readers could not walk
        raise LookalikeError(f"catalogue {printable(spec)!r}: could not be read "
                             f"({getattr(e, 'strerror', None) or type(e).__name__})") from e
    record.save()
    return catalogue


def _read_path(spec: str, path: Path, split, record) -> Catalogue:
    if path.is_file() and path.suffix == ".parquet":
        return tables.read(spec, path)
    if path.is_dir():
        for _, layout in LAYOUTS:
            if layout.detect(path):
                return layout.read(spec, path, split, record)
    raise LookalikeError(f"catalogue {printable(spec)!r}: layout not recognised. Expected "
                         + ", ".join(name for name, _ in LAYOUTS) + ", or a CSV, JSONL or parquet manifest")


def _split_suffix(text: str, default):
    """'owner/name:test' -> ('owner/name', 'test'); a bare path keeps its colons
    only when the part after the last colon is not a split name."""
    if ":" in text:
        head, tail = text.rsplit(":", 1)
        if re.fullmatch(r"[A-Za-z0-9_.\-\[\]%+]+", tail) and "/" not in tail:
            return head, tail
    return text, default
