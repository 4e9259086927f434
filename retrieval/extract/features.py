"""Backbone outputs of a catalogue's images, through the feature store: each
item is looked up by its content key and only the missing ones are
extracted (in batches, with a progress bar), stored chunk by chunk while
extraction goes, so a killed run resumes and a grown catalogue costs only
its new images.

Two kinds: the views' pooled features (what indexes and heads use) and the
inputs of a backbone's last stages (what `--unfreeze` trains those stages on)."""

import logging
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from retrieval.data.catalogue import Catalogue
from retrieval.embedding.embedder import Embedder
from retrieval.errors import DamagedArtefact, LookalikeError
from retrieval.extract.local import BATCH_SIZE, local_batches, local_engine
from retrieval.models import views as view_ops
from retrieval.store.feature_store import FeatureStore
from retrieval.store.fingerprint import digest
from retrieval.store.locks import exclusive, writing

log = logging.getLogger(__name__)
# A chunk is stored every CHUNK_IMAGES images or CHUNK_SECONDS, whichever
# comes first: what a killed extraction can lose at most. 64 lite0 features
# are ~0.9 MB, so 100,000 images make ~1,600 chunks, listed in well under a second.
CHUNK_IMAGES, CHUNK_SECONDS = 64, 30.0


def catalogue_features_fingerprint(catalogue_fingerprint: str, embedder: Embedder) -> str:
    return digest("features", catalogue_fingerprint, embedder.features_fingerprint)


def catalogue_features(catalogue: Catalogue, embedder: Embedder, cache_root, batch_size=BATCH_SIZE,
                       progress=None, engine=None):
    """Return (features float32 (N, V, dim), rows kept).

    Images that fail to decode are skipped, counted and logged; they never
    abort the build. `rows` are the catalogue rows the features belong to.
    `engine` (see `make_engine`) extracts the missing ones; default: here.
    """
    store = FeatureStore.for_embedder(cache_root, "features", embedder)
    engine = engine or local_engine

    def batches(rows):
        for done, features, skipped in engine(catalogue, embedder, rows, batch_size):
            yield done, {"features": features} if len(done) else {}, skipped

    arrays, rows = stored_outputs(catalogue, store, batches, f"features {embedder.backbone.name}", progress)
    return arrays["features"], rows


def stage_inputs(catalogue: Catalogue, embedder: Embedder, start: int, cache_root, batch_size=BATCH_SIZE):
    """What a staged backbone's stages [start:] need, for each image's views:
    the input map of stage `start` (float16, (N, V, C, H, W)) and the pooled
    outputs of the taps before it (float32, (N, V, P)). Returns
    (maps, pooled, rows), stored like the features."""
    backbone = embedder.backbone

    @torch.inference_mode()
    def run(batch):
        x = view_ops.expand(batch, embedder.views).to(backbone.device).contiguous(memory_format=torch.channels_last)
        x, pooled = backbone.model.run(x, 0, start)
        pooled = torch.cat(pooled, 1) if pooled else x.new_zeros(len(x), 0)
        return {"maps": view_ops.split(x.half().cpu(), embedder.views).numpy(),
                "pooled": view_ops.split(pooled.float().cpu(), embedder.views).numpy()}

    store = FeatureStore.for_embedder(cache_root, "stage-inputs", embedder, ("start", start))
    arrays, rows = stored_outputs(catalogue, store, lambda rows: local_batches(catalogue, embedder, rows, run,
                                                                               batch_size),
                                  f"stage inputs {backbone.name}")
    return arrays["maps"], arrays["pooled"], rows


def stored_outputs(catalogue: Catalogue, store: FeatureStore, batches, desc: str, progress=None):
    """({name: array (n, ...)}, rows kept) for the catalogue's decodable
    items: looked up in `store`, the missing ones made by `batches(rows)`
    (an iterator of (rows done, {name: array}, skip messages)) and stored. A
    chunk found damaged while reading is dropped and its items made again."""
    keys = catalogue.keys
    waiting = f"{desc}: another Lookalike process is extracting into the same store; waiting for it"
    root = store.folder.parents[1]
    with writing(root), exclusive(root, f"{store.folder.parent.name}-{store.folder.name}", waiting):
        for attempt in range(2):
            where = store.locations()
            missing = _missing_rows(keys, where)
            if missing:
                _extract_into(store, where, catalogue, missing, batches, desc, progress)
            rows = [row for row, key in enumerate(keys) if key in where]
            if not rows:
                raise LookalikeError(f"catalogue {catalogue.spec!r}: none of its {len(catalogue)} images could be "
                                     "read")
            try:
                return store.read([keys[row] for row in rows], where), np.asarray(rows, dtype=np.int64)
            except DamagedArtefact:
                if attempt:
                    raise


def _missing_rows(keys: list, where: dict) -> list:
    """One row per content key the store lacks (duplicate images are made once)."""
    seen, missing = set(where), []
    for row, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            missing.append(row)
    return missing


def _extract_into(store: FeatureStore, where: dict, catalogue: Catalogue, rows: list, batches, desc: str,
                  progress=None):
    """Make the outputs of `rows`, store them a chunk at a time and add them
    to `where` (the store's locations)."""
    stored = sum(key in where for key in catalogue.keys)
    done = len(catalogue) - len(rows)  # found, or a duplicate of an image about to be made
    total = len(catalogue)
    if stored:
        log.info("%s: %d of %d images already stored; extracting the other %d", desc, stored, total, len(rows))
    if progress is not None:
        progress.start("extracting features", total, done=done)
    pending_keys, pending, skipped = [], [], []
    written = time.monotonic()
    with tqdm(total=total, initial=done, desc=desc, unit="img") as bar:
        for batch_rows, arrays, errors in batches(rows):
            pending_keys += [catalogue.keys[row] for row in batch_rows]
            pending.append(arrays)
            skipped += errors
            bar.update(len(batch_rows) + len(errors))
            if progress is not None:
                progress.advance(bar.n)
            if len(pending_keys) >= CHUNK_IMAGES or time.monotonic() - written >= CHUNK_SECONDS:
                _write_chunk(store, where, pending_keys, pending)
                pending_keys, pending, written = [], [], time.monotonic()
        _write_chunk(store, where, pending_keys, pending)
    if skipped:
        log.warning("skipped %d unreadable image(s) in %s, e.g. %s", len(skipped), catalogue.spec, skipped[0])


def _write_chunk(store: FeatureStore, where: dict, keys: list, outputs: list):
    outputs = [o for o in outputs if o]
    if keys:
        store.write(keys, {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}, where)
