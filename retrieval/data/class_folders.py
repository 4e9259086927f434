"""Class folders: `DIR/<class name>/**/*.jpg`; the folder's 0-based
position in sorted order is its class number."""

import collections
from pathlib import Path

from retrieval.data.catalogue import Catalogue, make_dataset
from retrieval.data.files import Skipped, hashed, image_files, subfolders
from retrieval.errors import LookalikeError
from retrieval.store.fingerprint import digest


def detect(path: Path) -> bool:
    return path.is_dir() and bool(subfolders(path))


def read(spec: str, root: Path) -> Catalogue:
    skipped = Skipped()
    class_dirs = subfolders(root)
    images, labels, keys = [], [], []
    for label, class_dir in enumerate(class_dirs):
        files, file_keys = hashed(image_files(class_dir, skipped), skipped)
        images, keys, labels = images + files, keys + file_keys, labels + [label] * len(files)
    skipped.warn(spec)
    if not images:
        raise LookalikeError(f"catalogue {spec!r}: no image files in its class folders (or none it could read)")
    ids = [str(path.relative_to(root).with_suffix("")) for path in images]
    taken = collections.Counter(ids)  # a.jpg beside a.png: both keep their suffix
    ids = [str(path.relative_to(root)) if taken[item] > 1 else item for path, item in zip(images, ids)]
    names = [d.name for d in class_dirs]
    fp = digest("class-folders", keys, ids, names)
    return Catalogue(spec, make_dataset([str(p) for p in images], labels, ids, names), fp, item_keys=keys)

