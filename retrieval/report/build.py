"""One report, from a catalogue to its numbers, plots and maps: every
embedding is made, restricted to the images all of them cover, measured
(retrieval, kNN classification, cost), mapped to 2-D and shown on example
queries. What is written where is writer.py's job."""

import re
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from retrieval.data.catalogue import Catalogue
from retrieval.errors import LookalikeError
from retrieval.report import cost, maps, metrics, plots
from retrieval.report.embeddings import (
    aligned,
    autoencoder_embedding,
    backbone_embeddings,
    handcrafted_embedding,
    head_embeddings,
)
from retrieval.store.cache import cache_root

TOP_K = 5                 # results shown per embedding in the example rows
THUMBNAIL = 128           # longest side of an example image, pixels


@dataclass
class Options:
    backbones: list
    heads: list = field(default_factory=list)
    autoencoder: str | None = None     # RUN_DIR; None: train one here
    autoencoder_epochs: int = 20
    knn_k: int = 5
    timing_images: int = 64
    examples: int = 4
    seed: int = 0
    cache_dir: str | None = None
    device: str = "auto"


@dataclass
class Built:
    """What writer.py writes: report.json's content, figures, map positions."""

    report: dict
    figures: dict            # file name -> Figure
    maps: dict               # embedding name -> (N, 2) positions
    ids: list                # catalogue ids of the N images on the maps
    labels: np.ndarray


def build_report(catalogue: Catalogue, options: Options) -> Built:
    started = time.perf_counter()
    cache_dir = cache_root(options.cache_dir)
    embeddings = [handcrafted_embedding(catalogue),
                  autoencoder_embedding(catalogue, options.autoencoder, options.autoencoder_epochs, options.seed)]
    found, skipped, backbones = backbone_embeddings(catalogue, options.backbones, cache_dir, options.device)
    embeddings += found + head_embeddings(catalogue, options.heads, backbones, cache_dir, options.device)
    rows = aligned(embeddings)
    labels = np.asarray(catalogue.labels)[rows]
    names = catalogue.label_names
    if len(np.unique(labels)) < 2:
        raise LookalikeError(f"catalogue {catalogue.spec!r} has {len(np.unique(labels))} class here: a report "
                             "compares classes, it needs at least two")
    sample = cost.timing_sample(rows, options.timing_images)
    entries, neighbours, predictions = [], {}, {}
    for e in tqdm(embeddings, desc="measure", unit="embedding"):
        measured, neighbours[e.name], predictions[e.name] = metrics.measure(e.vectors, labels, names, options.knn_k)
        entries.append({"name": e.name, "kind": e.kind, "note": e.note, "metrics": measured,
                        "cost": dict(cost.index_cost(e), prepared_seconds=e.prepared_seconds,
                                     **cost.time_embedding(e, catalogue, sample))})
    positions = maps.tsne_maps(embeddings, options.seed)
    best = max(entries, key=lambda entry: entry["metrics"]["map_at_r"])["name"]
    classes, matrix = metrics.confusion(labels, predictions[best])
    figures = _figures(catalogue, rows, labels, entries, positions, neighbours, best, classes, matrix, options)
    report = {
        "catalogue": catalogue.spec, "n_images": len(rows), "n_classes": int(len(classes)), "knn_k": options.knn_k,
        "classes": [{"label": int(c), "number": int(c) + catalogue.first_class_number, "name": names[c]}
                    for c in classes],
        "embeddings": entries, "skipped": [{"name": s.name, "reason": s.reason} for s in skipped],
        "confusion": {"embedding": best, "classes": [names[c] for c in classes], "matrix": matrix.tolist()},
        "plots": {"recall": "recall_at_k.png", "confusion": "confusion.png",
                  "maps": {e["name"]: map_file(e["name"]) for e in entries},
                  "examples": [name for name in figures if name.startswith("example-")]},
        "seconds": round(time.perf_counter() - started, 1),
    }
    return Built(report, figures, positions, [catalogue.ids[r] for r in rows], labels)


def map_file(name: str) -> str:
    return "map-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".png"


def _figures(catalogue, rows, labels, entries, positions, neighbours, best, classes, matrix, options) -> dict:
    names, first = catalogue.label_names, catalogue.first_class_number
    numbers = {c: c + first for c in classes.tolist()}
    where = f"{catalogue.spec}: {len(rows)} images, {len(classes)} classes"
    figures = {
        "recall_at_k.png": plots.recall_figure({e["name"]: e["metrics"]["recall_curve"] for e in entries},
                                               f"Recall@K\n{where}"),
        "confusion.png": plots.confusion_figure(
            [f"{numbers[c]}: {names[c]}" for c in classes], matrix,
            f"most confused classes, kNN (k={options.knn_k})\nof {best}"),
    }
    for e in entries:
        figures[map_file(e["name"])] = plots.map_figure(positions[e["name"]], labels, names, numbers,
                                                        f"{e['name']}: t-SNE\n{where}")
    for i, query in enumerate(_example_queries(labels, options.examples)):
        image = _thumbnail(catalogue, rows[query])
        label = names[labels[query]]
        per_embedding = []
        for e in entries:
            found = neighbours[e["name"]]
            results = [(_thumbnail(catalogue, rows[pos]), names[labels[pos]], float(score),
                        labels[pos] == labels[query])
                       for pos, score in zip(found.rows[query, :TOP_K], found.scores[query, :TOP_K])]
            per_embedding.append((e["name"], results))
        figures[f"example-{i + 1}.png"] = plots.examples_figure(
            image, label, per_embedding, f"query {catalogue.ids[rows[query]]} ({label}): top {TOP_K} of each embedding")
    return figures


def _example_queries(labels: np.ndarray, n: int) -> list:
    """n images of n different classes spread over the catalogue: the first
    image of evenly spaced classes."""
    classes = np.unique(labels)
    chosen = classes[np.linspace(0, len(classes) - 1, min(n, len(classes))).round().astype(int)]
    return [int(np.flatnonzero(labels == c)[0]) for c in chosen]


def _thumbnail(catalogue: Catalogue, row: int):
    image = catalogue.image(int(row))
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    return image
