"""The fine-tuning curves as a PNG: people read a curve faster than a table.
Drawn on a matplotlib Figure of its own (no pyplot, no global backend)."""

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from retrieval.store.atomic import atomic_path


def plot_curves(path, history: list, baselines: dict, best_epoch: int, title: str):
    """Training loss (left) and validation R@1 / MAP@R per epoch (right), with
    the pretrained and whitening baselines as dashed lines."""
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    left.plot(epochs, [h["loss"] for h in history], marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="loss")
    for key, colour, label in (("recall_at_1", "tab:blue", "R@1"), ("map_at_r", "tab:orange", "MAP@R")):
        right.plot(epochs, [h[key] for h in history], marker="o", color=colour, label=f"fine-tuned {label}")
        for (name, metrics), style in zip(baselines.items(), ("--", ":")):
            right.axhline(metrics[key], color=colour, linestyle=style, linewidth=1, label=f"{name} {label}")
    if best_epoch:
        right.axvline(best_epoch, color="grey", linewidth=0.8)
        right.annotate("best", (best_epoch, right.get_ylim()[1]), ha="center", va="top", fontsize=8)
    right.set(title="validation (unseen classes)", xlabel="epoch", ylabel="fraction")
    for axes in (left, right):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
