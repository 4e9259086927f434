"""Folders of images, three ways:

- class folders, `DIR/<class name>/**/*.jpg`: each sub-folder is a class, its
  0-based position in sorted order its class number;
- a flat folder, `DIR/*.jpg`: a catalogue without classes;
- both at once: still without classes, each item's sub-folder kept as its
  `folder` metadata (missing for the loose images)."""

import collections
import os
from pathlib import Path

from retrieval.data.catalogue import Catalogue, make_dataset
from retrieval.data.files import Skipped, hashed, image_files, subfolders
from retrieval.errors import LookalikeError
from retrieval.store.fingerprint import digest


def detect(path: Path) -> bool:
    """A folder with anything in it (an empty one is no layout at all)."""
    return path.is_dir() and any(not entry.name.startswith(".") for entry in os.scandir(path))


def read(spec: str, root: Path, split, record) -> Catalogue:
    """The layout's read (catalogues.LAYOUTS); `split` is unused: the folder is one split."""
    skipped = Skipped()
    loose, loose_keys = hashed(image_files(root, skipped, recursive=False), skipped, record)
    groups = []  # (sub-folder, its images, their keys): every sub-folder, so class numbers are positions
    for folder in subfolders(root):
        files, keys = hashed(image_files(folder, skipped), skipped, record)
        groups.append((folder, files, keys))
    skipped.warn(spec)
    images = loose + [path for _, files, _ in groups for path in files]  # path strings
    keys = loose_keys + [key for _, _, group_keys in groups for key in group_keys]
    if not images:
        raise LookalikeError(f"catalogue {spec!r}: no image files in it or its class folders "
                             "(or none it could read)")
    ids = _ids(root, images)
    if loose:
        folder = [None] * len(loose) + [f.name for f, files, _ in groups for _ in files]
        mixed = any(files for _, files, _ in groups)
        metadata = {"folder": ("string", folder)} if mixed else None
        fp = digest("image-folder", keys, ids, folder if mixed else None)
        return Catalogue(spec, make_dataset(images, None, ids, [], metadata), fp, item_keys=keys)
    names = [f.name for f, _, _ in groups]
    labels = [label for label, (_, files, _) in enumerate(groups) for _ in files]
    fp = digest("class-folders", keys, ids, names)
    return Catalogue(spec, make_dataset(images, labels, ids, names), fp, item_keys=keys)


def _ids(root: Path, images: list) -> list:
    """Paths relative to the folder, without suffix; a.jpg beside a.png both keep theirs."""
    start = len(str(root).rstrip(os.sep)) + 1
    relative = [path[start:] for path in images]
    ids = [os.path.splitext(path)[0] for path in relative]
    taken = collections.Counter(ids)
    return [path if taken[item] > 1 else item for path, item in zip(relative, ids)]
