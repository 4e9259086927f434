"""Backbone features of a catalogue, extracted in batches with a progress bar
and cached under a fingerprint of (catalogue content, backbone weights,
preprocessing): a second run with the same inputs only reads the cache."""

import logging
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .atomic import atomic_dir, write_json
from .backbones import Backbone
from .cache import entry_dir, read_meta
from .catalogues import Catalogue
from .errors import LookalikeError
from .fingerprint import digest

log = logging.getLogger(__name__)
FEATURES_VERSION = 2  # bump when extraction changes in a way fingerprints can't see


def features_fingerprint(catalogue: Catalogue, backbone: Backbone, catalogue_fingerprint=None) -> str:
    return digest("features", FEATURES_VERSION, catalogue_fingerprint or catalogue.fingerprint,
                  backbone.name, backbone.weights, backbone.preprocessing)


def catalogue_features(catalogue: Catalogue, backbone: Backbone, cache_root, batch_size=64):
    """Return (features float32 (N, 2, dim): each image and its mirror, rows kept).

    Images that fail to decode are skipped, counted and logged; they never
    abort the build. `rows` are the catalogue rows the features belong to.
    """
    folder = entry_dir(cache_root, "features", features_fingerprint(catalogue, backbone))
    if read_meta(folder) is not None:
        return np.load(folder / "features.npy"), np.load(folder / "rows.npy")
    from_source = _slice_of_source(catalogue, backbone, cache_root)
    if from_source is not None:
        return from_source
    started = time.perf_counter()
    features, rows, skipped = extract(catalogue, backbone, batch_size)
    if not rows:
        raise LookalikeError(f"catalogue {catalogue.spec!r}: none of its {len(catalogue)} images could be read")
    seconds = time.perf_counter() - started
    features, rows = np.asarray(features, dtype=np.float32), np.asarray(rows, dtype=np.int64)
    with atomic_dir(folder) as tmp:
        np.save(tmp / "features.npy", features)
        np.save(tmp / "rows.npy", rows)
        write_json(tmp / "meta.json", {
            "catalogue": catalogue.spec, "catalogue_fingerprint": catalogue.fingerprint,
            "backbone": backbone.name, "weights": backbone.weights,
            "preprocessing": backbone.preprocessing, "n_images": len(rows), "skipped": skipped,
            "dim": int(features.shape[2]), "seconds": round(seconds, 2),
            "images_per_second": round(len(rows) / seconds, 1),
        })
    return features, rows


def _slice_of_source(catalogue: Catalogue, backbone: Backbone, cache_root):
    """A subset (--classes, per_class) reuses features cached for its whole
    source instead of decoding its images again; None when there are none."""
    if catalogue.source_fingerprint is None:
        return None
    folder = entry_dir(cache_root, "features", features_fingerprint(catalogue, backbone, catalogue.source_fingerprint))
    if read_meta(folder) is None:
        return None
    position = {int(r): i for i, r in enumerate(np.load(folder / "rows.npy"))}
    kept = [(row, position[source]) for row, source in enumerate(catalogue.source_rows) if source in position]
    if not kept:
        raise LookalikeError(f"catalogue {catalogue.spec!r}: none of its {len(catalogue)} images could be read")
    rows, positions = zip(*kept)
    features = np.load(folder / "features.npy", mmap_mode="r")[list(positions)]
    log.info("features: %d of the cached %s features", len(rows), catalogue.spec)
    return np.ascontiguousarray(features, dtype=np.float32), np.asarray(rows, dtype=np.int64)


def extract(catalogue: Catalogue, backbone: Backbone, batch_size=64):
    """Run the backbone over every decodable image; returns (features, rows, skipped)."""
    chunks, rows, skipped = [], [], []
    batch, batch_rows = [], []

    def flush():
        if batch:
            chunks.append(backbone(torch.stack(batch)).numpy())
            rows.extend(batch_rows)
            batch.clear()
            batch_rows.clear()

    for row in tqdm(range(len(catalogue)), desc=f"features {backbone.name}", unit="img"):
        try:
            batch.append(backbone.preprocess(catalogue.image(row)))
            batch_rows.append(row)
        except LookalikeError as e:
            skipped.append(str(e))
        if len(batch) == batch_size:
            flush()
    flush()
    if skipped:
        log.warning("skipped %d unreadable image(s) in %s, e.g. %s",
                    len(skipped), catalogue.spec, skipped[0])
    features = np.concatenate(chunks) if chunks else np.zeros((0, 2, backbone.dim), np.float32)
    return features, rows, len(skipped)


def embed_images(images, backbone: Backbone) -> np.ndarray:
    """Backbone features (N, 2, dim) of already-validated PIL images (queries)."""
    return backbone(torch.stack([backbone.preprocess(im) for im in images])).numpy()
