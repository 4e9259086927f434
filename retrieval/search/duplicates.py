"""Near-duplicate images in a catalogue, through the index's neighbours
(not all pairs: it runs at 100,000 items): every item's nearest neighbours
at or above a similarity threshold are joined into groups (union-find);
byte-identical images share one vector and always group.. The
threshold was chosen on altered copies of the car thumbnails (resized,
recompressed, cropped, brightness-shifted; scripts/duplicates_eval.py,
BENCHMARKS.md)."""

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from retrieval.store.atomic import write_bytes

if TYPE_CHECKING:
    from retrieval.search.recommender import Recommender

NEIGHBOURS = 10
BLOCK = 512


def duplicate_groups(rec: "Recommender", threshold: float | None = None, neighbours: int = NEIGHBOURS) -> list:
    """[{"rows": [...], "similarity": lowest similarity joining the group}],
    groups of two or more rows, largest first."""
    threshold = rec.near_identical if threshold is None else threshold
    if rec.index is None:
        rec.build()
    keys = np.unique(rec.row_keys[rec.indexed])
    parent = {int(k): int(k) for k in keys}
    weakest = {}

    def root(key):
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for start in tqdm(range(0, len(keys), BLOCK), desc="duplicates", unit="block"):
        block = keys[start:start + BLOCK]
        found, scores = rec.index.search(rec.index.vectors(block), neighbours + 1)
        for key, row_keys, row_scores in zip(block.tolist(), found, scores):
            for other, score in zip(row_keys.tolist(), row_scores.tolist()):
                if other < 0 or other == key or not score >= threshold:
                    continue
                a, b = root(key), root(other)
                if a != b:
                    parent[b] = a
                weakest[root(key)] = min(weakest.get(a, 1.0), weakest.get(b, 1.0), score)
    members = {}
    for key in keys.tolist():
        members.setdefault(root(key), []).extend(rec.rows_of_key[key])
    groups = [{"rows": sorted(rows), "similarity": round(weakest.get(top, 1.0), 4)}
              for top, rows in members.items() if len(rows) > 1]
    return sorted(groups, key=lambda g: (-len(g["rows"]), g["rows"][0]))



def write_groups(rec: "Recommender", groups: list, path, threshold: float) -> None:
    """As JSON ({threshold, groups: [{ids, labels, similarity}]}) or CSV (group, id, label), atomically."""
    cat = rec.catalogue
    if Path(path).suffix == ".csv":
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["group", "id", "label"])
        for number, group in enumerate(groups, 1):
            writer.writerows([number, cat.ids[r], cat.label_of(r) or ""] for r in group["rows"])
        data = text.getvalue().encode()
    else:
        data = json.dumps({"threshold": threshold, "groups": [
            {"ids": [cat.ids[r] for r in g["rows"]], "labels": [cat.label_of(r) for r in g["rows"]],
             "similarity": g["similarity"]} for g in groups]}, indent=2, ensure_ascii=False).encode()
    write_bytes(path, data)
