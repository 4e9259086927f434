"""Extraction in this process: batches of catalogue images decoded and
preprocessed in a thread while the backbone runs the previous batch."""

from concurrent.futures import ThreadPoolExecutor

import torch

from retrieval.data.catalogue import Catalogue
from retrieval.embedding.embedder import Embedder
from retrieval.errors import LookalikeError

# Images per batch: small batches keep malloc reusing memory (batches of 32
# spent 9x the system time page-faulting and extracted 1.18x slower: BENCHMARKS.md)
BATCH_SIZE = 8


def local_engine(catalogue: Catalogue, embedder: Embedder, rows, batch_size=BATCH_SIZE):
    """(rows done, features (n, V, D), skip messages) per batch, in this process."""
    for done, arrays, skipped in local_batches(catalogue, embedder, rows,
                                               lambda x: {"features": embedder.backbone_features(x)}, batch_size):
        yield done, arrays.get("features"), skipped


def local_batches(catalogue: Catalogue, embedder: Embedder, rows, run, batch_size=BATCH_SIZE):
    """(rows done, run(batch), skip messages) per batch of `rows`: this
    process's extraction. The next batch is decoded and preprocessed in a
    thread (PIL and torch release the GIL) while `run` works on this one."""
    rows = list(rows)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as decoder:
        pending = None
        for start in range(0, len(rows), batch_size):
            decoding = decoder.submit(_decode, catalogue, embedder, rows[start:start + batch_size])
            if pending is not None:
                yield _run(run, *pending.result())
            pending = decoding
        if pending is not None:
            yield _run(run, *pending.result())


def _decode(catalogue: Catalogue, embedder: Embedder, rows) -> tuple:
    """(decodable rows, their preprocessed images, skip messages of the others)."""
    done, images, errors = [], [], []
    for row in rows:
        try:
            images.append(embedder.preprocess(catalogue.image(row)))
            done.append(row)
        except LookalikeError as e:
            errors.append(str(e))
    return done, images, errors


def _run(run, done, images, errors) -> tuple:
    return done, run(torch.stack(images)) if images else {}, errors
