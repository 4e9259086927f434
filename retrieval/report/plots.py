"""The report's plots, each a matplotlib Figure of its own (no pyplot, no
global backend): Recall@K curves, the most confused classes, 2-D maps
coloured by class, and example queries with each embedding's top results.
The app draws its maps with the same function, with the query marked."""

import io
import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from retrieval.store.atomic import write_bytes

SAME, OTHER = "#1a9850", "#d73027"   # a result of the query's class, of another


def save(fig: Figure, path, dpi: int = 100):
    """A figure as a PNG, written atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    write_bytes(path, buffer.getvalue())


def recall_figure(curves: dict, title: str) -> Figure:
    """{embedding: {K: Recall@K}} as one line per embedding, K on a log axis."""
    fig = Figure(figsize=(7.5, 4.5))
    axes = fig.subplots()
    for name, curve in sorted(curves.items(), key=lambda item: -item[1][1]):
        ks = sorted(curve)
        axes.plot(ks, [curve[k] for k in ks], marker="o", label=f"{name} (R@1 {curve[1]:.3f})")
    axes.set_xscale("log", base=2)
    axes.set_xticks(ks, [str(k) for k in ks])
    axes.set(title=title, xlabel="K (nearest results)", ylabel="Recall@K", ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def most_confused(matrix: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n classes with the most mistakes, made or received."""
    off = matrix - np.diag(np.diag(matrix))
    return np.sort(np.argsort(-(off.sum(0) + off.sum(1)), kind="stable")[:n])


def confusion_figure(names: list, matrix: np.ndarray, title: str, n: int = 12) -> Figure:
    """The kNN confusion matrix restricted to the most confused classes,
    counts written in each non-empty cell."""
    keep = most_confused(matrix, min(n, len(matrix)))
    sub = matrix[np.ix_(keep, keep)]
    labels = [textwrap.shorten(names[i], 48, placeholder="…") for i in keep]  # car names differ at the end
    fig = Figure(figsize=(2.2 + 0.55 * len(keep), 1.6 + 0.5 * len(keep)))
    axes = fig.subplots()
    image = axes.imshow(sub, cmap="Blues")
    for (i, j), count in np.ndenumerate(sub):
        if count:
            axes.text(j, i, str(count), ha="center", va="center", fontsize=7,
                      color="white" if count > sub.max() / 2 else "black")
    axes.set_xticks(range(len(keep)), labels, rotation=60, ha="right", fontsize=7)
    axes.set_yticks(range(len(keep)), labels, fontsize=7)
    axes.set(xlabel="predicted class (kNN)", ylabel="true class", title=title)
    fig.colorbar(image, ax=axes, shrink=0.7, label="images")
    fig.tight_layout()
    return fig


def class_colours(n: int, seed: int = 0) -> np.ndarray:
    """n distinct colours, shuffled so that neighbouring class numbers differ."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"]
    colours = cmap(np.arange(n) % cmap.N if n <= 20 else np.linspace(0, 1, n))
    return colours if n <= 20 else colours[np.random.default_rng(seed).permutation(n)]


def map_figure(xy: np.ndarray, labels, names, numbers, title: str, query=None) -> Figure:
    """A 2-D map, one dot per image coloured by class; up to 12 classes get a
    legend (`names[label]`), more their number (`numbers[label]`) at their
    centre. `query`: (x, y) to star."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    colours = class_colours(len(classes))
    size = float(np.clip(20000 / len(labels), 8, 40))  # dots that neither vanish nor cover each other
    fig = Figure(figsize=(7, 6))
    axes = fig.subplots()
    for colour, c in zip(colours, classes):
        at = xy[labels == c]
        axes.scatter(at[:, 0], at[:, 1], s=size, color=colour, alpha=0.8, linewidths=0, label=names[c])
        if len(classes) > 12:
            cx, cy = np.median(at, axis=0)
            axes.annotate(str(numbers[c]), (cx, cy), fontsize=7, ha="center", va="center",
                          bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": colour, "alpha": 0.8})
    if len(classes) <= 12:
        axes.legend(fontsize=7, markerscale=2, loc="best", framealpha=0.8)
    if query is not None:
        axes.scatter([query[0]], [query[1]], marker="*", s=420, color="gold", edgecolors="black",
                     linewidths=1.2, zorder=5, label="query")
        axes.annotate("query", query, xytext=(8, 8), textcoords="offset points", fontsize=9, weight="bold")
    axes.set(title=title, xticks=[], yticks=[])
    fig.tight_layout()
    return fig


def examples_figure(query_image, query_label: str, rows: list, title: str) -> Figure:
    """One query and, per embedding, its top results: a row per embedding,
    the query first. `rows`: (embedding name, [(image, label, score, same
    class)]). Results of the query's class are framed green and ticked, the
    others framed red."""
    k = max(len(results) for _, results in rows)
    fig = Figure(figsize=(1.7 * (k + 1) + 1.2, 1.75 * len(rows) + 0.6))
    grid = fig.subplots(len(rows), k + 1, squeeze=False)
    for r, (name, results) in enumerate(rows):
        cell = grid[r][0]
        cell.imshow(query_image)
        cell.set_ylabel(textwrap.fill(name, 18), fontsize=8, rotation=0, ha="right", va="center", labelpad=6)
        if r == 0:
            cell.set_title("query\n" + textwrap.shorten(query_label, 24, placeholder="…"), fontsize=7)
        for c in range(k):
            axes = grid[r][c + 1]
            if c < len(results):
                image, label, score, same = results[c]
                axes.imshow(image)
                h, w = np.asarray(image).shape[:2]
                axes.add_patch(Rectangle((0, 0), w - 1, h - 1, fill=False, lw=4, ec=SAME if same else OTHER))
                axes.set_title(f"{'✓ ' if same else ''}{score:.2f}\n"
                               + textwrap.shorten(label, 24, placeholder="…"), fontsize=7,
                               color=SAME if same else OTHER)
        for axes in grid[r]:
            axes.set_xticks([])
            axes.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
