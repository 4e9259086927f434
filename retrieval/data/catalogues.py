"""Catalogues: one spec string -> one `datasets.Dataset` schema.

Every source becomes columns `image` (datasets.Image), `label` (ClassLabel with
human-readable names) and `id` (stable string). Specs:

- `hub:OWNER/NAME[:SPLIT]`  Hugging Face Hub dataset (default split `train`)
- `fashion-mnist[:SPLIT]`   Debian's dataset-fashion-mnist if installed, else the Hub copy
                            (split `test` (10k, default), `train` (60k) or `all`)
- `DIR[:SPLIT]` or a `.parquet` file, with the layout detected:
    * Stanford Cars original (`cars_train/`, `devkit/cars_train_annos.mat`, `devkit/cars_meta.mat`)
    * Fashion-MNIST idx files (`*-ubyte.gz`)
    * parquet files (`*.parquet`, with an image column and a label column)
    * class folders (`DIR/<class name>/*.jpg|png|...`)

Class numbers (`classes="1-49,60"`) follow the source's own numbering: Stanford
Cars' devkit ids 1-196; the integer label of Hub, parquet and Fashion-MNIST data
(0-based); for class folders, the folder's 0-based position in sorted order.
"""

import collections
import gzip
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import datasets
import numpy as np
from PIL import Image as PILImage

from retrieval.data.images import open_image
from retrieval.errors import LookalikeError
from retrieval.store.fingerprint import content_key, digest, file_keys, files_digest

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_HUB = "zalando-datasets/fashion_mnist"
FASHION_MNIST_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                       "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FEATURES = datasets.Features({
    "image": datasets.Image(),
    "label": None,  # ClassLabel, filled per catalogue
    "id": datasets.Value("string"),
})


@dataclass
class Catalogue:
    """A loaded catalogue: the dataset plus what identifies its content."""

    spec: str
    dataset: datasets.Dataset
    fingerprint: str
    first_class_number: int = 0  # what label 0 is called in `classes`
    # each item's content key (fingerprint.content_key), when the loader
    # already read the files; otherwise computed from the images when asked
    item_keys: list | None = None

    @property
    def label_names(self) -> list:
        return self.dataset.features["label"].names

    def __len__(self):
        return len(self.dataset)

    def image(self, row: int) -> PILImage.Image:
        """Decode one catalogue image (RGB), validated like any user file."""
        return open_image(self.image_source(row), name=f"item {self.ids[row]}")

    def image_source(self, row: int):
        """One item's undecoded image: its bytes, or the path of its file."""
        raw = self.raw_images[row]["image"]
        return raw["bytes"] or raw["path"]

    @cached_property
    def keys(self) -> list:
        """Each item's content key: what the feature store looks its features up by."""
        if self.item_keys is not None:
            return self.item_keys
        keys = []
        for raw in self.raw_images.with_format("arrow")["image"].to_pylist():
            keys.append(content_key(raw["bytes"]) if raw["bytes"] is not None else file_keys([raw["path"]])[0])
        return keys

    @cached_property
    def ids(self) -> list:
        """Item ids as a plain list (a datasets Column re-reads Arrow on every index)."""
        return self._column("id")

    @cached_property
    def labels(self) -> list:
        return self._column("label")

    def _column(self, name: str) -> list:
        """One column as a list, straight from Arrow: iterating a datasets
        Column formats row by row (0.31 s against 0.001 s for 10,000 labels)."""
        return self.dataset.with_format("arrow")[name].to_pylist()

    @cached_property
    def raw_images(self) -> datasets.Dataset:
        """The dataset with undecoded images ({'bytes', 'path'}), for our own safe decoding."""
        return self.dataset.cast_column("image", datasets.Image(decode=False))

    def restrict(self, rows, fingerprint: str | None = None) -> "Catalogue":
        """The same catalogue limited to `rows` (its items keep their keys, so
        their stored features)."""
        rows = [int(r) for r in rows]
        if len(rows) == len(self.dataset):
            return self
        keys = [self.keys[r] for r in rows] if self.item_keys is not None else None
        return Catalogue(self.spec, self.dataset.select(rows), fingerprint or digest(self.fingerprint, "rows", rows),
                         self.first_class_number, keys)


def load_catalogue(spec: str, classes: str | None = None, per_class: int | None = None) -> Catalogue:
    """Load a catalogue from its spec, optionally keeping only some classes
    and at most `per_class` images of each (small demo catalogues)."""
    spec = spec.strip()
    if not spec:
        raise LookalikeError("empty catalogue spec")
    catalogue = _load_source(spec)
    if classes:
        catalogue = select_classes(catalogue, classes)
    if per_class is not None:
        catalogue = first_per_class(catalogue, per_class)
    if len(catalogue) == 0:
        raise LookalikeError(f"catalogue {spec!r} has no images"
                             + (f" in classes {classes}" if classes else ""))
    return catalogue


def _load_source(spec: str) -> Catalogue:
    if spec.startswith("hub:"):
        name, split = _split_suffix(spec[4:], default="train")
        return _from_hub(spec, name, split)
    base, split = _split_suffix(spec, default=None)
    if base == "fashion-mnist":
        split = split or "test"
        if _has_idx_files(FASHION_MNIST_DIR):
            return _from_idx(spec, FASHION_MNIST_DIR, split)
        return _from_hub(spec, FASHION_MNIST_HUB, split)
    path = Path(base).expanduser()
    if not path.exists():
        raise LookalikeError(
            f"catalogue {spec!r}: no such folder or file. Expected a folder, a .parquet file, "
            "'fashion-mnist' or 'hub:OWNER/NAME[:SPLIT]'")
    if path.is_file() and path.suffix == ".parquet":
        return _from_parquet(spec, [path])
    if path.is_dir():
        if (path / "cars_train").is_dir() and (path / "devkit" / "cars_meta.mat").is_file():
            return _from_stanford_cars(spec, path)
        if _has_idx_files(path):
            return _from_idx(spec, path, split or "test")
        parquets = sorted(path.rglob("*.parquet"))
        if parquets:
            return _from_parquet(spec, parquets)
        if any(p.is_dir() for p in path.iterdir()):
            return _from_class_folders(spec, path)
    raise LookalikeError(
        f"catalogue {spec!r}: layout not recognised. Expected Stanford Cars (cars_train/ + devkit/), "
        "class folders (DIR/<class>/*.jpg), parquet files or Fashion-MNIST *-ubyte.gz files")


def _split_suffix(text: str, default):
    """'owner/name:test' -> ('owner/name', 'test'); a bare path keeps its colons
    only when the part after the last colon is not a split name."""
    if ":" in text:
        head, tail = text.rsplit(":", 1)
        if re.fullmatch(r"[A-Za-z0-9_.\-\[\]%+]+", tail) and "/" not in tail:
            return head, tail
    return text, default


def _dataset(images, labels, ids, names) -> datasets.Dataset:
    features = FEATURES.copy()
    features["label"] = datasets.ClassLabel(names=list(names))
    return datasets.Dataset.from_dict({"image": images, "label": labels, "id": ids}, features=features)


def _from_stanford_cars(spec, root: Path) -> Catalogue:
    from scipy.io import loadmat  # only this layout needs scipy

    devkit = root / "devkit"
    meta = loadmat(devkit / "cars_meta.mat")
    names = [str(np.ravel(n)[0]) for n in np.ravel(meta["class_names"])]
    annos = np.ravel(loadmat(devkit / "cars_train_annos.mat")["annotations"])
    images, labels, ids = [], [], []
    missing = 0
    for record in annos:
        fname = str(np.ravel(record["fname"])[0])
        path = root / "cars_train" / fname
        if not path.is_file():
            missing += 1
            continue
        images.append(str(path))
        labels.append(int(np.ravel(record["class"])[0]) - 1)
        ids.append(Path(fname).stem)
    keys = file_keys(images)
    fp = digest("stanford-cars", keys, ids, names, labels)
    if missing:
        log.warning("catalogue %s: %d annotated files are missing from cars_train/", spec, missing)
    return Catalogue(spec, _dataset(images, labels, ids, names), fp, first_class_number=1, item_keys=keys)


def _from_class_folders(spec, root: Path) -> Catalogue:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    images, labels, ids = [], [], []
    for label, class_dir in enumerate(class_dirs):
        for path in sorted(class_dir.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                images.append(str(path))
                labels.append(label)
                ids.append(str(path.relative_to(root).with_suffix("")))
    if not images:
        raise LookalikeError(f"catalogue {spec!r}: no image files in its class folders")
    taken = collections.Counter(ids)  # a.jpg beside a.png: both keep their suffix
    ids = [str(Path(path).relative_to(root)) if taken[item] > 1 else item for path, item in zip(images, ids)]
    names = [d.name for d in class_dirs]
    keys = file_keys(images)
    fp = digest("class-folders", keys, ids, names)
    return Catalogue(spec, _dataset(images, labels, ids, names), fp, item_keys=keys)


def _has_idx_files(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*-images-idx3-ubyte.gz"))


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _pgm(pixels: np.ndarray) -> bytes:
    """A grayscale image as binary PGM: lossless like PNG but needs no encoder
    (10,000 Fashion-MNIST images: 1.9 s as PNG, BENCHMARKS.md)."""
    height, width = pixels.shape
    return b"P5 %d %d 255\n" % (width, height) + pixels.tobytes()


def _from_idx(spec, root: Path, split: str) -> Catalogue:
    prefixes = {"train": ["train"], "test": ["t10k"], "all": ["train", "t10k"]}
    if split not in prefixes:
        raise LookalikeError(f"catalogue {spec!r}: split must be train, test or all, not {split!r}")
    images, labels, ids, sources = [], [], [], []
    for prefix in prefixes[split]:
        image_file = root / f"{prefix}-images-idx3-ubyte.gz"
        label_file = root / f"{prefix}-labels-idx1-ubyte.gz"
        if not (image_file.is_file() and label_file.is_file()):
            raise LookalikeError(f"catalogue {spec!r}: {image_file.name} or {label_file.name} missing")
        pixels, targets = _read_idx(image_file), _read_idx(label_file)
        name = "test" if prefix == "t10k" else "train"
        for i, (img, label) in enumerate(zip(pixels, targets)):
            images.append({"bytes": _pgm(img), "path": None})
            labels.append(int(label))
            ids.append(f"{name}-{i:05d}")
        sources += [image_file, label_file]
    n_classes = max(labels) + 1
    names = FASHION_MNIST_NAMES if n_classes <= 10 else [str(i) for i in range(n_classes)]
    fp = digest("idx", files_digest(sources), split)
    return Catalogue(spec, _dataset(images, labels, ids, names[:max(n_classes, 10)]), fp)


def _from_parquet(spec, files) -> Catalogue:
    ds = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    return _normalised(spec, ds, digest("parquet", files_digest(files)))


def _from_hub(spec, name: str, split: str) -> Catalogue:
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # offline, unknown repo, unknown split: all one message
        raise LookalikeError(f"catalogue {spec!r}: could not load {name!r} split {split!r} "
                             f"from the Hugging Face Hub ({type(e).__name__}: {e})") from e
    return _normalised(spec, ds, digest("hub", name, split, ds._fingerprint))


def _normalised(spec, ds: datasets.Dataset, fingerprint: str) -> Catalogue:
    """Map any dataset with an image and a label column onto the schema."""
    image_col = next((c for c, f in ds.features.items() if isinstance(f, datasets.Image)), None)
    label_col = next((c for c, f in ds.features.items() if isinstance(f, datasets.ClassLabel)), None)
    if label_col is None:
        label_col = next((c for c in ("label", "labels", "class", "fine_label") if c in ds.features), None)
    if image_col is None or label_col is None:
        raise LookalikeError(f"catalogue {spec!r}: needs an image column and a label column; "
                             f"found {list(ds.features)}")
    label_feature = ds.features[label_col]
    if isinstance(label_feature, datasets.ClassLabel):
        names = label_feature.names
        labels = ds[label_col]
    else:
        values = ds[label_col]
        names = sorted({str(v) for v in values}, key=lambda s: (len(s), s))
        index = {n: i for i, n in enumerate(names)}
        labels = [index[str(v)] for v in values]
    ids = [str(v) for v in ds["id"]] if "id" in ds.features else [f"{i:06d}" for i in range(len(ds))]
    images = ds.cast_column(image_col, datasets.Image(decode=False))[image_col]
    return Catalogue(spec, _dataset(images, labels, ids, names), fingerprint)


def parse_classes(text: str) -> set:
    """'1-49,60,70-72' -> {1..49, 60, 70, 71, 72}."""
    numbers = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise LookalikeError(f"classes {text!r}: use numbers and ranges like 1-49,60")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise LookalikeError(f"classes {text!r}: range {part} is reversed")
        numbers.update(range(lo, hi + 1))
    return numbers


def first_per_class(catalogue: Catalogue, n: int) -> Catalogue:
    """Keep the first `n` images of each class, in catalogue order (deterministic)."""
    if n < 1:
        raise LookalikeError(f"per_class must be at least 1, not {n}")
    labels = np.asarray(catalogue.labels)
    order = np.argsort(labels, kind="stable")
    first = np.searchsorted(labels[order], labels[order], side="left")
    return catalogue.restrict(np.sort(order[np.arange(len(order)) - first < n]).tolist())


def select_classes(catalogue: Catalogue, classes: str) -> Catalogue:
    """Keep the images whose class number (source numbering) is in `classes`."""
    wanted = {n - catalogue.first_class_number for n in parse_classes(classes)}
    rows = np.flatnonzero(np.isin(np.asarray(catalogue.labels), sorted(wanted)))
    return catalogue.restrict(rows, digest(catalogue.fingerprint, "classes", sorted(wanted)))
