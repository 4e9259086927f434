"""The catalogue: every source becomes one `datasets.Dataset` schema, columns
`image` (datasets.Image), `label` (ClassLabel with human-readable names;
absent when the source has no classes) and `id` (stable string), plus
whatever typed metadata the source carries; with each item's content key,
what the feature store looks its features up by."""

import difflib
from dataclasses import dataclass
from functools import cached_property

import datasets
import numpy as np
import pyarrow as pa
from PIL import Image as PILImage

from retrieval.data.images import open_image
from retrieval.errors import LookalikeError
from retrieval.store.fingerprint import content_key, digest, file_keys

BASE_COLUMNS = ("image", "label", "id")
# metadata types (the --where language's) and how datasets stores each
VALUE_TYPES = {"integer": "int64", "float": "float64", "boolean": "bool", "string": "string"}


def item_key(content_key: str) -> int:
    """An index key from an item's content key (60 of its bits): identical
    images share one vector, and a grown catalogue keeps its items' keys."""
    return int(content_key[:15], 16)


def make_dataset(images, labels, ids, names, metadata: dict | None = None) -> datasets.Dataset:
    """The schema from lists: images as paths or {'bytes', 'path'}; `labels`
    None for a catalogue without classes; `metadata`: {column: (type, values)}
    with a type of VALUE_TYPES and None for a missing value."""
    columns, features = {"image": images, "id": ids}, {"image": datasets.Image(), "id": datasets.Value("string")}
    if labels is not None:
        columns["label"], features["label"] = labels, datasets.ClassLabel(names=list(names))
    for name, (kind, values) in (metadata or {}).items():
        columns[name], features[name] = values, datasets.Value(VALUE_TYPES[kind])
    ordered = [c for c in ("image", "label", "id") if c in columns] + [c for c in columns if c not in BASE_COLUMNS]
    return datasets.Dataset.from_dict({c: columns[c] for c in ordered},
                                      features=datasets.Features({c: features[c] for c in ordered}))


@dataclass
class Catalogue:
    """A loaded catalogue: the dataset plus what identifies its content."""

    spec: str
    dataset: datasets.Dataset
    fingerprint: str
    first_class_number: int = 0  # what label 0 is called in `classes`
    # each item's content key (fingerprint.content_key), when the reader
    # already read the files; otherwise computed from the images when asked
    item_keys: list | None = None
    # what it was loaded from (the resolved source and subset), whatever its
    # content: a grown catalogue has the same source and another fingerprint
    source: str = ""

    @cached_property
    def features(self) -> datasets.Features:
        """The dataset's schema, read once: `Dataset.features` deep-copies it on
        every access (25 ms with 5,000 class names, per query at a million items)."""
        return self.dataset.features

    @property
    def has_labels(self) -> bool:
        return "label" in self.features

    @property
    def label_names(self) -> list:
        self.require_labels("class names")
        return self.features["label"].names

    def label_of(self, row: int) -> str | None:
        """One item's class name; None in a catalogue without classes."""
        return self.label_names[self.labels[row]] if self.has_labels else None

    def require_labels(self, what: str):
        """One clear line when something needs classes this catalogue has not."""
        if not self.has_labels:
            raise LookalikeError(f"catalogue {self.spec!r} has no classes (no label column or class folders): "
                                 f"{what} needs them")

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
        return [content_key(raw["bytes"]) if raw["bytes"] is not None else file_keys([raw["path"]])[0]
                for raw in self.raw_images.with_format("arrow")["image"].to_pylist()]

    @cached_property
    def index_keys(self) -> np.ndarray:
        """Each item's index key (int64, from its content key: `item_key`), what
        every recommender of this catalogue stores its vector under."""
        return np.array([item_key(key) for key in self.keys], dtype=np.int64)

    @cached_property
    def rows_of_index_key(self) -> "RowsOfKey":
        """Index key -> catalogue rows with that image, in catalogue order."""
        return RowsOfKey(self.index_keys)

    @cached_property
    def ids(self) -> list:
        """Item ids as a plain list (a datasets Column re-reads Arrow on every index)."""
        return self._column("id")

    @cached_property
    def labels(self) -> list:
        self.require_labels("labels")
        return self._column("label")

    @cached_property
    def metadata_fields(self) -> dict:
        """{field: type} that results show and `--where` filters on: id, the
        class name as `label` (when there are classes) and every metadata column."""
        fields = {"id": "string", **({"label": "string"} if self.has_labels else {})}
        kinds = {v: k for k, v in VALUE_TYPES.items()}
        for name, feature in self.features.items():
            if name not in BASE_COLUMNS and isinstance(feature, datasets.Value):
                fields[name] = kinds.get(feature.dtype, "string")
        return fields

    @cached_property
    def metadata_table(self) -> pa.Table:
        """The fields of `metadata_fields` as one Arrow table (what filters run over, vectorised)."""
        table = self.dataset.select_columns(list(self.metadata_fields)).with_format("arrow")[:]
        columns = {name: table[name] for name in self.metadata_fields if name != "label"}
        if self.has_labels:
            names = pa.array(self.label_names, pa.string())
            columns["label"] = names.take(table["label"])
        return pa.table({name: columns[name] for name in self.metadata_fields})

    def metadata_of(self, row: int, fields) -> dict:
        """One item's values of `fields` (any of `metadata_fields`), None when missing."""
        return {name: self.metadata_table[name][row].as_py() for name in fields}

    def metadata(self, row: int) -> dict:
        """One item's metadata (missing values left out), for results."""
        table = self.metadata_table
        return {name: value for name in table.column_names if name not in ("id", "label")
                for value in [table[name][row].as_py()] if value is not None}

    @cached_property
    def row_of(self) -> dict:
        """{item id: catalogue row}."""
        return {item: row for row, item in enumerate(self.ids)}

    def row(self, item_id: str) -> int:
        """The row of an item id, or one line suggesting close ids."""
        if item_id in self.row_of:
            return self.row_of[item_id]
        close = difflib.get_close_matches(str(item_id)[:200], self.ids, n=3, cutoff=0.6)
        raise LookalikeError(f"no item {_short(item_id)} in catalogue {self.spec!r}"
                             + (f"; did you mean {', '.join(close)}?" if close else ""))

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
                         self.first_class_number, keys, self.source)


class RowsOfKey:
    """The catalogue rows of each index key, looked up by binary search over
    the sorted keys: built in a sort (0.1 s at a million items, where a dict
    of lists took 2 s before a first answer)."""

    def __init__(self, row_keys: np.ndarray):
        self.order = np.argsort(row_keys, kind="stable")
        self.sorted = np.asarray(row_keys)[self.order]

    def get(self, key: int, default=()) -> list:
        start, stop = np.searchsorted(self.sorted, key, side="left"), np.searchsorted(self.sorted, key, side="right")
        return self.order[start:stop].tolist() if stop > start else default

    def __getitem__(self, key: int) -> list:
        return self.get(key, [])


def _short(text) -> str:
    text = repr(text)
    return text if len(text) <= 60 else text[:60] + "…"
