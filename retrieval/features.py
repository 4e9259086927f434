"""Backbone outputs of a catalogue, extracted in batches with a progress bar
and cached under a fingerprint of (catalogue content, embedder features
fingerprint): a second run with the same inputs only reads the cache.

Two kinds: the views' pooled features (what indexes and heads use) and the
inputs of a backbone's last stages (what `--unfreeze` trains those stages on)."""

import logging
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import views as view_ops
from .artefacts import check, record
from .atomic import atomic_dir, write_json
from .cache import entry_dir, read_meta
from .catalogues import Catalogue
from .embedder import Embedder
from .errors import DamagedArtefact, LookalikeError
from .fingerprint import digest

log = logging.getLogger(__name__)
# Images per batch: small batches keep malloc reusing memory (batches of 32
# spent 9x the system time page-faulting and extracted 1.18x slower: BENCHMARKS.md)
BATCH_SIZE = 8


def features_fingerprint(catalogue_fingerprint: str, embedder: Embedder) -> str:
    return digest("features", catalogue_fingerprint, embedder.features_fingerprint)


def catalogue_features(catalogue: Catalogue, embedder: Embedder, cache_root, batch_size=BATCH_SIZE,
                       progress=None):
    """Return (features float32 (N, V, dim), rows kept).

    Images that fail to decode are skipped, counted and logged; they never
    abort the build. `rows` are the catalogue rows the features belong to.
    """
    arrays, rows = _cached(catalogue, embedder, cache_root, "features", (),
                           lambda batch: {"features": embedder.backbone_features(batch)}, batch_size, progress)
    return arrays["features"], rows


def stage_inputs(catalogue: Catalogue, embedder: Embedder, start: int, cache_root, batch_size=BATCH_SIZE):
    """What a staged backbone's stages [start:] need, for each image's views:
    the input map of stage `start` (float16, (N, V, C, H, W)) and the pooled
    outputs of the taps before it (float32, (N, V, P)). Returns
    (maps, pooled, rows), cached like the features."""
    backbone = embedder.backbone

    @torch.inference_mode()
    def run(batch):
        x = view_ops.expand(batch, embedder.views).to(backbone.device).contiguous(memory_format=torch.channels_last)
        x, pooled = backbone.model.run(x, 0, start)
        pooled = torch.cat(pooled, 1) if pooled else x.new_zeros(len(x), 0)
        return {"maps": view_ops.split(x.half().cpu(), embedder.views).numpy(),
                "pooled": view_ops.split(pooled.float().cpu(), embedder.views).numpy()}

    arrays, rows = _cached(catalogue, embedder, cache_root, "stage-inputs", ("start", start), run, batch_size)
    return arrays["maps"], arrays["pooled"], rows


def _cached(catalogue, embedder, cache_root, kind, extra, run, batch_size, progress=None):
    """Arrays `run` makes of the catalogue's images, from the cache or computed
    and cached (atomically); a subset reuses what its whole source cached."""
    folder = entry_dir(cache_root, kind, digest(kind, features_fingerprint(catalogue.fingerprint, embedder), *extra))
    cached = _load(folder)
    if cached is not None:
        return cached
    if catalogue.source_fingerprint is not None:
        source = entry_dir(cache_root, kind, digest(
            kind, features_fingerprint(catalogue.source_fingerprint, embedder), *extra))
        cached = _load(source, mmap_mode="r")
        if cached is not None:
            return _slice_of_source(catalogue, source, *cached)
    started = time.perf_counter()
    arrays, rows, skipped = extract(catalogue, embedder, run, batch_size, progress)
    seconds = time.perf_counter() - started
    with atomic_dir(folder) as tmp:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        np.save(tmp / "rows.npy", rows)
        write_json(tmp / "meta.json", {
            "files": record(tmp, [f"{name}.npy" for name in [*arrays, "rows"]]),
            "kind": kind, "catalogue": catalogue.spec, "catalogue_fingerprint": catalogue.fingerprint,
            "embedder": embedder.backbone.describe(), "views": list(embedder.views),
            "extra": list(extra), "n_images": len(rows), "skipped": skipped,
            "shapes": {name: list(array.shape) for name, array in arrays.items()},
            "seconds": round(seconds, 2), "images_per_second": round(len(rows) / seconds, 1),
        })
    return arrays, rows


def _load(folder, mmap_mode=None):
    """(arrays, rows) of a complete cache entry, or None: absent, or damaged
    (then recomputed, never served)."""
    try:
        meta = read_meta(folder)
        if meta is None:
            return None
        check(folder, meta.get("files"), required=[*(f"{name}.npy" for name in meta["shapes"]), "rows.npy"])
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode=mmap_mode) for name in meta["shapes"]}
        rows = np.load(folder / "rows.npy")
    except (DamagedArtefact, OSError, ValueError, KeyError) as e:
        log.warning("cache entry %s is damaged (%s): recomputing it", folder, e)
        return None
    return arrays, rows


def _slice_of_source(catalogue: Catalogue, folder, arrays, source_rows):
    """A subset (--classes, per_class) takes its rows of the arrays cached for
    its whole source instead of decoding its images again."""
    position = {int(r): i for i, r in enumerate(source_rows)}
    kept = [(row, position[source]) for row, source in enumerate(catalogue.source_rows) if source in position]
    if not kept:
        raise LookalikeError(f"catalogue {catalogue.spec!r}: none of its {len(catalogue)} images could be read")
    rows, positions = zip(*kept)
    log.info("%s: %d of the cached %s images", folder.parent.name, len(rows), catalogue.spec)
    return ({name: np.ascontiguousarray(array[list(positions)]) for name, array in arrays.items()},
            np.asarray(rows, dtype=np.int64))


def extract(catalogue: Catalogue, embedder: Embedder, run, batch_size=BATCH_SIZE, progress=None):
    """`run` (a batch of preprocessed images -> dict of arrays) over every
    decodable image; returns (arrays, rows, number skipped). `progress`
    (a Progress) follows it, for the app's page."""
    chunks, rows, skipped = [], [], []
    batch, batch_rows = [], []

    def flush():
        if batch:
            chunks.append(run(torch.stack(batch)))
            rows.extend(batch_rows)
            batch.clear()
            batch_rows.clear()

    if progress is not None:
        progress.start("extracting features", len(catalogue))
    for row in tqdm(range(len(catalogue)), desc=f"features {embedder.backbone.name}", unit="img"):
        try:
            batch.append(embedder.preprocess(catalogue.image(row)))
            batch_rows.append(row)
        except LookalikeError as e:
            skipped.append(str(e))
        if len(batch) == batch_size:
            flush()
            if progress is not None:
                progress.advance(row + 1)
    flush()
    if skipped:
        log.warning("skipped %d unreadable image(s) in %s, e.g. %s",
                    len(skipped), catalogue.spec, skipped[0])
    if not rows:
        raise LookalikeError(f"catalogue {catalogue.spec!r}: none of its {len(catalogue)} images could be read")
    arrays = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
    return arrays, np.asarray(rows, dtype=np.int64), len(skipped)
