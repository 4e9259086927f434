"""Why two images are similar: the query and a result side by side, each with
a heat map of its regions that match the other image.

The maps are the backbone's own: the outputs of the stages whose pooling
makes the embedding (efficientnet_lite0: stages 6, 7 and 8, after lite2's
same stages in efficientnet_lite0_lite2; the ResNets: their last stage), each
brought to the grid of the last one (average pooling), L2-normalised per
stage and concatenated, so that each location has a vector built like the
pooled features. For the fine-tuned embedding each location's vector also
goes through the head (its projection and whitening; the head's own trained
stages run in the backbone). A location is as hot as it matches one place of
the other image more than the rest (`heat`)."""

import io
import textwrap

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image

from retrieval.embedding.embedder import Embedder
from retrieval.errors import LookalikeError
from retrieval.models.stages import StagedNet

PANEL = 360  # pixels: small catalogue thumbnails are shown at least this wide


@torch.inference_mode()
def location_vectors(embedder: Embedder, image: Image.Image) -> np.ndarray:
    """(h, w, D) normalised vectors, one per location of the last pooled stage's grid."""
    model = embedder.backbone.model
    if not isinstance(model, StagedNet):
        raise LookalikeError(f"explain needs a backbone made of stages (the EfficientNet-Lite ones, the ResNets), "
                             f"not {embedder.backbone.name}")
    maps = model.tap_maps(embedder.preprocess(image)[None].to(embedder.backbone.device))
    grid = maps[-1].shape[2:]
    parts = [F.normalize(F.adaptive_avg_pool2d(m.float(), grid), dim=1) for m in maps]
    vectors = torch.cat(parts, 1)[0].permute(1, 2, 0)  # (h, w, D)
    h, w, d = vectors.shape
    if embedder.head is not None:
        vectors = torch.as_tensor(embedder.head(vectors.reshape(h * w, d).cpu().numpy())).reshape(h, w, -1)
    return F.normalize(vectors.float().cpu(), dim=-1).numpy()


def heat(mine: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(h, w): how specifically each of `mine`'s locations matches `other`,
    its best cosine to any of `other`'s locations minus its average one. A
    plain background matches every part of another plain background about
    equally (best and average alike: cool); a detail found in one place of
    the other image stands out (hot). The best cosine alone lit up the
    backgrounds."""
    h, w, d = mine.shape
    cosines = mine.reshape(h * w, d) @ other.reshape(-1, d).T
    return (cosines.max(axis=1) - cosines.mean(axis=1)).reshape(h, w)


def explain(embedder: Embedder, query: Image.Image, result: Image.Image) -> tuple:
    """(query's heat map, result's heat map), each (h, w)."""
    a, b = location_vectors(embedder, query), location_vectors(embedder, result)
    return heat(a, b), heat(b, a)


def explanation_png(images: list, heats: list, titles: list, caption: str = "") -> bytes:
    """Each image beside the others with its heat map over it (upsampled to
    the image's own pixels), shown at least PANEL pixels wide, titles wrapped,
    and one colour scale for both."""
    low = min(float(h.min()) for h in heats)
    high = max(float(h.max()) for h in heats)
    scale = max(PANEL / min(im.width for im in images), 1.0)
    widths = [im.width * scale for im in images]
    height = max(im.height for im in images) * scale
    fig = Figure(figsize=((sum(widths) + 60 * len(images)) / 100, (height + 190) / 100), dpi=100)
    grid = fig.add_gridspec(2, len(images), height_ratios=[height, 18], width_ratios=widths, hspace=0.35,
                            wspace=0.08, left=0.02, right=0.98, top=1 - 80 / (height + 190), bottom=0.12)
    shown = None
    for i, (image, h, title) in enumerate(zip(images, heats, titles)):
        ax = fig.add_subplot(grid[0, i])
        up = np.asarray(Image.fromarray(h.astype(np.float32)).resize(image.size, Image.Resampling.BILINEAR))
        ax.imshow(image)
        shown = ax.imshow(up, cmap="inferno", alpha=0.55, vmin=low, vmax=high)
        ax.set_title(textwrap.fill(title, 38), fontsize=9)
        ax.axis("off")
    bar = fig.colorbar(shown, cax=fig.add_subplot(grid[1, :]), orientation="horizontal")
    bar.set_label("how specifically each region matches one place of the other image "
                  "(its best cosine there minus its average)", fontsize=8)
    if caption:
        fig.suptitle(textwrap.fill(caption, 90), fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def explain_pair(embedder: Embedder, query: Image.Image, result: Image.Image, titles: list) -> tuple:
    """(PNG bytes, cosine): the query and the result side by side under
    `titles`, with their heat maps and a caption of their cosine in `embedder`."""
    score = float(np.dot(*embedder.embed([query, result])))
    png = explanation_png([query, result], list(explain(embedder, query, result)), titles,
                          f"cosine {score:.3f} in {embedder.name}: bright regions match the other image")
    return png, score
