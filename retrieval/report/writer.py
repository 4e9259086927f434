"""The report folder: REPORT.md (the tables, the plots and the exact command
that made them), report.json (every number), the PNG plots and maps.npz
(each image's 2-D position per embedding, for the app's query marker). The
folder is written whole, atomically: a failed run leaves the last report."""

import datetime
import os
import platform
from pathlib import Path

import numpy as np
import torch

from retrieval.evaluation.table import METRIC_KEYS, METRIC_TITLES, table
from retrieval.report import plots
from retrieval.report.build import Built
from retrieval.store.atomic import Layout, atomic_dir, atomic_path, check_replaceable, write_json

REPORT_FILE, JSON_FILE, MAPS_FILE = "REPORT.md", "report.json", "maps.npz"
KIND = "report"  # the folder marker (store.atomic)
LEGACY = Layout(REPORT_FILE, (REPORT_FILE, JSON_FILE, MAPS_FILE, "*.png"))  # reports written before markers


def check_output(output) -> Path:
    """The report replaces its folder whole: never a folder of anything else."""
    check_replaceable(output, KIND, "--output", LEGACY)
    return Path(output)


def machine() -> str:
    """The CPU (or GPU) the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} on {torch.get_num_threads()} threads{gpu}"


def write_report(output, built: Built, command: str) -> Path:
    output = check_output(output)
    report = dict(built.report, command=command, machine=machine(),
                  date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    names = list(built.maps)
    with atomic_dir(output, KIND, "--output", LEGACY) as tmp:
        for file, figure in built.figures.items():
            plots.save(figure, tmp / file)
        with atomic_path(tmp / MAPS_FILE) as path, open(path, "wb") as f:
            np.savez(f, ids=np.asarray(built.ids), labels=built.labels,
                     **{f"xy{i}": built.maps[name] for i, name in enumerate(names)})
        write_json(tmp / JSON_FILE, dict(report, maps_order=names))
        (tmp / REPORT_FILE).write_text(markdown(report))
    return output


def tables(report: dict) -> str:
    """The report's tables (markdown): REPORT.md's and the app's."""
    entries = report["embeddings"]
    lines = ["### Retrieval: every image queries all the others", "",
             table(["embedding", "kind", "dim", *METRIC_TITLES, "P@1"],
                   [[e["name"], e["kind"], str(e["cost"]["dim"]),
                     *(f"{e['metrics'][k]:.3f}" for k in (*METRIC_KEYS, "precision_at_1"))] for e in entries],
                   align="llr" + "r" * (len(METRIC_TITLES) + 1))]
    lines += ["", f"### kNN classification (k = {report['knn_k']}, each image by its nearest others)", "",
              "| embedding | accuracy | macro P | macro R | macro F1 | weighted P | weighted R | weighted F1 |",
              "|---|" + "---:|" * 7]
    for e in entries:
        knn = e["metrics"]["knn"]
        lines.append(f"| {e['name']} | {knn['accuracy']:.3f} | "
                     + " | ".join(f"{knn[avg][k]:.3f}" for avg in ("macro", "weighted")
                                  for k in ("precision", "recall", "f1")) + " |")
    lines += ["", "### Cost", "",
              "| embedding | images/s | timed | prepared | vector | vectors | Annoy index | trees | search_k "
              "| Annoy recall@10 vs exact |", "|---|" + "---:|" * 9]
    for e in entries:
        c = e["cost"]
        prepared = f"{c['prepared_seconds']:.1f} s" if c["prepared_seconds"] else "–"
        lines.append(f"| {e['name']} | {c['images_per_second']:.1f} | {c['timed_images']} in {c['seconds']:.1f} s "
                     f"| {prepared} | {c['dim']} × float32 | {_mb(c['vector_bytes'])} | {_mb(c['index_bytes'])} "
                     f"| {c['n_trees']} | {c['search_k']:,} | {c['annoy_recall_at_10']:.3f} |")
    if report["skipped"]:
        lines += ["", "### Not compared", ""]
        lines += [f"- **{s['name']}**: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines)


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def per_class(report: dict) -> str:
    """Per-class kNN precision, recall, F1 and support, one folded table per embedding."""
    blocks = []
    for e in report["embeddings"]:
        rows = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        rows += [f"| {c['class']} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |"
                 for c in e["metrics"]["knn"]["per_class"]]
        blocks.append(f"<details><summary>{e['name']}</summary>\n\n" + "\n".join(rows) + "\n\n</details>")
    return "\n\n".join(blocks)


def markdown(report: dict) -> str:
    notes = "\n".join(f"- **{e['name']}** ({e['kind']}): {e['note']}" for e in report["embeddings"])
    plot = report["plots"]
    maps = "\n".join(f"![{name}]({file})" for name, file in plot["maps"].items())
    examples = "\n".join(f"![example {i + 1}]({file})" for i, file in enumerate(plot["examples"]))
    return f"""# Lookalike report: {report['catalogue']}

{report['n_images']} images of {report['n_classes']} classes; {report['date']}; {report['machine']};
{report['seconds']:.0f} s in all.

Made with:

```bash
{report['command']}
```

## Embeddings

{notes}

## Tables

Retrieval follows `python -m retrieval evaluate`: every image queries all the
others; R@K is the share of queries with an image of their class among their
K nearest, MAP@R the mean average precision over the R = class size − 1
nearest, P@1 the share whose nearest image shares their class (R@1 counts
the same thing; the two differ only where an image's nearest others tie in
similarity, as duplicates do, and each breaks the tie on its own). kNN
classification gives each
image the most common class among its {report['knn_k']} nearest others.
Images/s: decoding and embedding {plot_sample(report)} catalogue images in
batches of 8 after one warm-up batch; "prepared" is training or fitting done
by this run. The Annoy index is the engine's own, tuned until its recall@10
against exact search reaches 0.99 on 200 items (or its tree limit).

{tables(report)}

## Recall@K

![Recall@K]({plot['recall']})

## Most confused classes

kNN confusions of the best embedding by MAP@R, **{report['confusion']['embedding']}**,
between the classes with the most mistakes:

![confusion]({plot['confusion']})

## 2-D maps (t-SNE, coloured by class)

{maps}

## Example queries

Each row: the query, then an embedding's top 5 (green ✓: same class as the query).

{examples}

## kNN classification per class

{per_class(report)}
"""


def plot_sample(report: dict) -> int:
    return report["embeddings"][0]["cost"]["timed_images"]
