"""Backbone outputs of a catalogue, extracted in batches with a progress bar
and cached under a fingerprint of (catalogue content, backbone weights,
preprocessing): a second run with the same inputs only reads the cache.

Two kinds: pooled features (what the index and the heads use) and the inputs
of a backbone's last stages (what `--unfreeze` trains those stages on)."""

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
# Images per batch: small batches keep malloc reusing memory (batches of 32
# spent 9x the system time page-faulting and extracted 1.18x slower: BENCHMARKS.md)
BATCH_SIZE = 8


def features_fingerprint(catalogue: Catalogue, backbone: Backbone, catalogue_fingerprint=None) -> str:
    return digest("features", FEATURES_VERSION, catalogue_fingerprint or catalogue.fingerprint,
                  backbone.name, backbone.weights, backbone.preprocessing)


def catalogue_features(catalogue: Catalogue, backbone: Backbone, cache_root, batch_size=BATCH_SIZE):
    """Return (features float32 (N, 2, dim): each image and its mirror, rows kept).

    Images that fail to decode are skipped, counted and logged; they never
    abort the build. `rows` are the catalogue rows the features belong to.
    """
    arrays, rows = _cached(catalogue, backbone, cache_root, "features", (),
                           lambda batch: {"features": backbone(batch).numpy()}, batch_size)
    return arrays["features"], rows


def stage_inputs(catalogue: Catalogue, backbone: Backbone, start: int, cache_root, batch_size=BATCH_SIZE):
    """What a staged backbone's stages [start:] need, for each image and its
    mirror: the input map of stage `start` (float16, (N, 2, C, H, W)) and the
    pooled outputs of the taps before it (float32, (N, 2, P)). Returns
    (maps, pooled, rows), cached like the features."""
    model = backbone.model

    @torch.inference_mode()
    def run(batch):
        views = []
        for view in (batch, batch.flip(-1)):
            x, pooled = model.run(view.to(backbone.device).contiguous(memory_format=torch.channels_last), 0, start)
            pooled = torch.cat(pooled, 1) if pooled else x.new_zeros(len(x), 0)
            views.append((x.half().cpu(), pooled.float().cpu()))
        return {"maps": torch.stack([v[0] for v in views], 1).numpy(),
                "pooled": torch.stack([v[1] for v in views], 1).numpy()}

    arrays, rows = _cached(catalogue, backbone, cache_root, "stage-inputs", ("start", start), run, batch_size)
    return arrays["maps"], arrays["pooled"], rows


def _cached(catalogue, backbone, cache_root, kind, extra, run, batch_size):
    """Arrays `run` makes of the catalogue's images, from the cache or computed
    and cached (atomically); a subset reuses what its whole source cached."""
    folder = entry_dir(cache_root, kind, digest(kind, features_fingerprint(catalogue, backbone), *extra))
    if read_meta(folder) is not None:
        return _load(folder)
    if catalogue.source_fingerprint is not None:
        source = entry_dir(cache_root, kind, digest(
            kind, features_fingerprint(catalogue, backbone, catalogue.source_fingerprint), *extra))
        if read_meta(source) is not None:
            return _slice_of_source(catalogue, source)
    started = time.perf_counter()
    arrays, rows, skipped = extract(catalogue, backbone, run, batch_size)
    seconds = time.perf_counter() - started
    with atomic_dir(folder) as tmp:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        np.save(tmp / "rows.npy", rows)
        write_json(tmp / "meta.json", {
            "kind": kind, "catalogue": catalogue.spec, "catalogue_fingerprint": catalogue.fingerprint,
            "backbone": backbone.name, "weights": backbone.weights, "preprocessing": backbone.preprocessing,
            "extra": list(extra), "n_images": len(rows), "skipped": skipped,
            "shapes": {name: list(array.shape) for name, array in arrays.items()},
            "seconds": round(seconds, 2), "images_per_second": round(len(rows) / seconds, 1),
        })
    return arrays, rows


def _load(folder, mmap_mode=None):
    arrays = {path.stem: np.load(path, mmap_mode=mmap_mode) for path in sorted(folder.glob("*.npy"))}
    return arrays, arrays.pop("rows")


def _slice_of_source(catalogue: Catalogue, folder):
    """A subset (--classes, per_class) takes its rows of the arrays cached for
    its whole source instead of decoding its images again."""
    arrays, source_rows = _load(folder, mmap_mode="r")
    position = {int(r): i for i, r in enumerate(source_rows)}
    kept = [(row, position[source]) for row, source in enumerate(catalogue.source_rows) if source in position]
    if not kept:
        raise LookalikeError(f"catalogue {catalogue.spec!r}: none of its {len(catalogue)} images could be read")
    rows, positions = zip(*kept)
    log.info("%s: %d of the cached %s images", folder.parent.name, len(rows), catalogue.spec)
    return ({name: np.ascontiguousarray(array[list(positions)]) for name, array in arrays.items()},
            np.asarray(rows, dtype=np.int64))


def extract(catalogue: Catalogue, backbone: Backbone, run, batch_size=BATCH_SIZE):
    """`run` (a batch of preprocessed images -> dict of arrays) over every
    decodable image; returns (arrays, rows, number skipped)."""
    chunks, rows, skipped = [], [], []
    batch, batch_rows = [], []

    def flush():
        if batch:
            chunks.append(run(torch.stack(batch)))
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
    if not rows:
        raise LookalikeError(f"catalogue {catalogue.spec!r}: none of its {len(catalogue)} images could be read")
    arrays = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
    return arrays, np.asarray(rows, dtype=np.int64), len(skipped)


def embed_images(images, backbone: Backbone) -> np.ndarray:
    """Backbone features (N, 2, dim) of already-validated PIL images (queries)."""
    return backbone(torch.stack([backbone.preprocess(im) for im in images])).numpy()
