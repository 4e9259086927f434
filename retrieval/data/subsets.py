"""Parts of a catalogue: some classes (`--classes 1-49,60`, in the source's
own numbering) and the first N images of each (`--per-class`). Ranges are
kept as ranges: `1-99999999999999` costs nothing, it is never expanded."""

import re

import numpy as np

from retrieval.data.catalogue import Catalogue
from retrieval.errors import LookalikeError
from retrieval.store.fingerprint import digest

MAX_CLASS_DIGITS = 9  # class numbers up to 999,999,999
MAX_PARTS = 1000


def parse_classes(text: str) -> list:
    """'1-49,60,70-72' -> [(1, 49), (60, 60), (70, 72)]: sorted, merged (lo, hi) ranges."""
    parts = text.split(",")
    if len(text) > 10_000 or len(parts) > MAX_PARTS:
        raise LookalikeError(f"classes: at most {MAX_PARTS} numbers or ranges")
    ranges = []
    for part in parts:
        part = part.strip()
        m = re.fullmatch(rf"(\d{{1,{MAX_CLASS_DIGITS}}})(?:\s*-\s*(\d{{1,{MAX_CLASS_DIGITS}}}))?", part)
        if not m:
            raise LookalikeError(f"classes {_short(text)}: use numbers (up to {MAX_CLASS_DIGITS} digits) and "
                                 f"ranges like 1-49,60")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise LookalikeError(f"classes {_short(text)}: range {part} is reversed")
        ranges.append((lo, hi))
    merged = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def select_classes(catalogue: Catalogue, classes: str) -> Catalogue:
    """Keep the images whose class number (source numbering) is in `classes`."""
    catalogue.require_labels("--classes")
    ranges = parse_classes(classes)
    numbers = np.asarray(catalogue.labels) + catalogue.first_class_number
    keep = np.zeros(len(numbers), dtype=bool)
    for lo, hi in ranges:
        keep |= (numbers >= lo) & (numbers <= hi)
    return catalogue.restrict(np.flatnonzero(keep), digest(catalogue.fingerprint, "classes", ranges))


def first_per_class(catalogue: Catalogue, n: int) -> Catalogue:
    """Keep the first `n` images of each class, in catalogue order (deterministic)."""
    if n < 1:
        raise LookalikeError(f"per_class must be at least 1, not {n}")
    catalogue.require_labels("--per-class")
    labels = np.asarray(catalogue.labels)
    order = np.argsort(labels, kind="stable")
    first = np.searchsorted(labels[order], labels[order], side="left")
    return catalogue.restrict(np.sort(order[np.arange(len(order)) - first < n]).tolist())


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")
