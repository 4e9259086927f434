"""Fashion-MNIST's idx files (`*-images-idx3-ubyte.gz` + labels), split
`test` (t10k, the default), `train` or `all`; images kept as PGM bytes."""

import gzip
from pathlib import Path

import numpy as np

from retrieval.data.catalogue import Catalogue, make_dataset
from retrieval.errors import LookalikeError
from retrieval.store.fingerprint import digest, files_digest

FASHION_MNIST_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                       "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PREFIXES = {"train": ["train"], "test": ["t10k"], "all": ["train", "t10k"]}


def detect(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*-images-idx3-ubyte.gz"))


def read(spec: str, root: Path, split: str | None = None, record=None) -> Catalogue:
    """The layout's read (catalogues.LAYOUTS); `record` is unused: nothing here is hashed per file."""
    split = split or "test"
    if split not in PREFIXES:
        raise LookalikeError(f"catalogue {spec!r}: split must be train, test or all, not {split!r}")
    images, labels, ids, sources = [], [], [], []
    for prefix in PREFIXES[split]:
        image_file = root / f"{prefix}-images-idx3-ubyte.gz"
        label_file = root / f"{prefix}-labels-idx1-ubyte.gz"
        if not (image_file.is_file() and label_file.is_file()):
            raise LookalikeError(f"catalogue {spec!r}: {image_file.name} or {label_file.name} missing")
        pixels, targets = _read_idx(image_file, spec), _read_idx(label_file, spec)
        if pixels.ndim != 3 or targets.ndim != 1 or len(pixels) != len(targets):
            raise LookalikeError(f"catalogue {spec!r}: {image_file.name} and {label_file.name} don't match")
        name = "test" if prefix == "t10k" else "train"
        for i, (img, label) in enumerate(zip(pixels, targets)):
            images.append({"bytes": _pgm(img), "path": None})
            labels.append(int(label))
            ids.append(f"{name}-{i:05d}")
        sources += [image_file, label_file]
    n_classes = max(labels) + 1
    names = FASHION_MNIST_NAMES if n_classes <= 10 else [str(i) for i in range(n_classes)]
    fp = digest("idx", files_digest(sources), split)
    return Catalogue(spec, make_dataset(images, labels, ids, names[:max(n_classes, 10)]), fp)


def _read_idx(path: Path, spec: str) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
        ndim = data[3]
        shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, EOFError, IndexError, ValueError) as e:
        raise LookalikeError(f"catalogue {spec!r}: {path.name} is not a readable idx file ({type(e).__name__})") from e


def _pgm(pixels: np.ndarray) -> bytes:
    """A grayscale image as binary PGM: lossless like PNG but needs no encoder
    (10,000 Fashion-MNIST images: 1.9 s as PNG, BENCHMARKS.md)."""
    height, width = pixels.shape
    return b"P5 %d %d 255\n" % (width, height) + pixels.tobytes()
