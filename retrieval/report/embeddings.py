"""Every embedding the report compares, made for one catalogue: handcrafted
descriptors, a convolutional autoencoder (no labels), each pretrained
backbone whose weights can be had (the others are skipped, saying why), PCA
whitening of each backbone's features, and each fine-tuned head given.

Each comes with a function that embeds images from scratch, which the
report times on a sample of images (decoding included)."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from retrieval.data.catalogue import Catalogue
from retrieval.embedding.embedder import Embedder, create_embedder, load_head
from retrieval.errors import LookalikeError
from retrieval.extract.features import catalogue_features
from retrieval.models import views as view_ops
from retrieval.models.backbones import create_backbone
from retrieval.models.whitening import pca_whitening_head
from retrieval.report import handcrafted

log = logging.getLogger(__name__)
WHITENING_DIM = 1024  # as the fine-tuner's PCA-whitening baseline


@dataclass
class Embedding:
    name: str
    kind: str                  # handcrafted | autoencoder | pretrained | PCA whitening | fine-tuned
    vectors: np.ndarray        # (N, d), one per row of `rows`
    rows: np.ndarray           # catalogue rows
    embed: Callable            # PIL images -> (n, d): what is timed
    prepared_seconds: float = 0.0  # training or fitting done for this report (0: none)
    note: str = ""


@dataclass
class Skipped:
    name: str
    reason: str


def handcrafted_embedding(catalogue: Catalogue) -> Embedding:
    rows, vectors = [], []
    for row in tqdm(range(len(catalogue)), desc="handcrafted", unit="img"):
        try:
            vectors.append(handcrafted.describe(catalogue.image(row)))
        except LookalikeError:
            continue
        rows.append(row)
    return Embedding("handcrafted", "handcrafted", np.stack(vectors), np.asarray(rows),
                     handcrafted.handcrafted_features,
                     note=f"HSV colour histogram, uniform LBP texture, 4x4-cell edge orientations "
                          f"({handcrafted.DIM}-d)")


def autoencoder_embedding(catalogue: Catalogue, run_dir=None, epochs: int = 20, seed: int = 0) -> Embedding:
    """From a saved run (`python -m finetune --method autoencoder`), or trained
    here on the catalogue's own images, without their labels."""
    from retrieval.report import autoencoder as ae

    data, rows = ae.catalogue_pixels(catalogue)
    started = time.perf_counter()
    if run_dir is not None:
        model, note, prepared = ae.load_autoencoder(run_dir), f"run {run_dir}", 0.0
    else:
        result = ae.train_autoencoder(data, ae.AutoencoderConfig(epochs=epochs, seed=seed))
        first, last = result.history[0]["loss"], result.history[-1]["loss"]
        model, prepared = result.model, time.perf_counter() - started
        note = (f"trained here without labels on these {len(data)} images, {epochs} epochs "
                f"(reconstruction MSE {first:.4f} -> {last:.4f})")
    codes = model.encode(data)
    centre = codes.mean(axis=0)  # codes share a large common part: cosine compares what differs
    return Embedding("autoencoder", "autoencoder", codes - centre, rows,
                     lambda images: model.encode(ae.pixels(images)) - centre, prepared,
                     note + "; codes centred on their mean over these images")


def backbone_embeddings(catalogue: Catalogue, names, cache_dir, device="auto") -> tuple:
    """(embeddings, skipped, backbones by name): each backbone's pretrained
    features and their PCA whitening; a backbone whose weights can't be had
    is skipped with the reason."""
    embeddings, skipped, built = [], [], {}
    for name in names:
        try:
            backbone = create_backbone(name, device=device, cache_dir=cache_dir)
        except LookalikeError as e:
            log.info("report: skipping %s (%s)", name, e)
            skipped.append(Skipped(name, str(e)))
            continue
        built[name] = backbone
        embedder = create_embedder(backbone)
        features, rows = catalogue_features(catalogue, embedder, cache_dir)
        embeddings.append(Embedding(name, "pretrained", embedder.embed_features(features), rows, embedder.embed,
                                    note=f"{backbone.weights}, views {', '.join(embedder.views)}, "
                                         f"inference on {backbone.runtime}"))
        embeddings.append(_whitened(embedder, features, rows))
    return embeddings, skipped, built


def _whitened(embedder: Embedder, features: np.ndarray, rows) -> Embedding:
    """PCA whitening of the backbone's features, fitted without labels on the
    catalogue's own images (all views), as the fine-tuner's baseline is made."""
    started = time.perf_counter()
    views = torch.as_tensor(np.asarray(features, dtype=np.float32))
    dim = min(WHITENING_DIM, views.shape[2])
    head = pca_whitening_head(views, dim)

    def whiten(per_view: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return view_ops.pool(head(torch.as_tensor(per_view)).numpy())

    return Embedding(f"{embedder.backbone.name} + PCA whitening", "PCA whitening", whiten(views), rows,
                     lambda images: whiten(embedder.features(images)), time.perf_counter() - started,
                     f"{dim}-d, fitted without labels on these images")


def head_embeddings(catalogue: Catalogue, heads, backbones: dict, cache_dir, device="auto") -> list:
    """Each fine-tuned head (RUN_DIR or hub:OWNER/NAME) on its own backbone,
    shared with the pretrained row when it is there."""
    embeddings = []
    for spec in heads:
        head = load_head(spec)
        embedder = create_embedder(backbones.get(head.backbone, "auto"), head, device, cache_dir=cache_dir)
        features, rows = catalogue_features(catalogue, embedder, cache_dir)
        training = head.config.training
        note = (f"run {spec}: {training.get('loss', '?')} loss, trained on {training.get('catalogue', '?')} "
                f"classes {training.get('classes') or 'all'}; backbone inference on {embedder.backbone.runtime}")
        embeddings.append(Embedding(embedder.name, "fine-tuned", embedder.embed_features(features), rows,
                                    embedder.embed, note=note))
    return embeddings


def aligned(embeddings: list) -> np.ndarray:
    """Restrict every embedding to the rows all of them cover (an image one
    could not read is left out of every row's measurements); returns them."""
    common = embeddings[0].rows
    for e in embeddings[1:]:
        common = np.intersect1d(common, e.rows)
    for e in embeddings:
        keep = np.isin(e.rows, common)
        e.vectors, e.rows = e.vectors[keep], e.rows[keep]
    return common
