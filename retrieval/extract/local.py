"""Extraction in this process: batches of catalogue images decoded and
preprocessed in threads while the backbone runs the previous batch."""

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import torch

from retrieval.data.catalogue import Catalogue
from retrieval.embedding.embedder import Embedder
from retrieval.errors import LookalikeError

# Images per batch: small batches keep malloc reusing memory (batches of 32
# spent 9x the system time page-faulting and extracted 1.18x slower: BENCHMARKS.md)
BATCH_SIZE = 8
MAX_GPU_DECODERS = 8  # on an H200 with 16 cores: 4 to 8 threads 1.32x one, more no faster (GIL)


def local_engine(catalogue: Catalogue, embedder: Embedder, rows, batch_size=BATCH_SIZE):
    """(rows done, features (n, V, D), skip messages) per batch, in this process."""
    for done, arrays, skipped in local_batches(catalogue, embedder, rows,
                                               lambda x: {"features": embedder.backbone_features(x)}, batch_size):
        yield done, arrays.get("features"), skipped


def local_batches(catalogue: Catalogue, embedder: Embedder, rows, run, batch_size=BATCH_SIZE):
    """(rows done, run(batch), skip messages) per batch of `rows`, in order:
    this process's extraction. The next batches are decoded and preprocessed
    in threads (PIL and torch release the GIL) while `run` works on this one."""
    rows = list(rows)
    workers = decode_workers(embedder.backbone.device)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as decoder:
        pending = deque()
        for start in range(0, len(rows), batch_size):
            pending.append(decoder.submit(_decode, catalogue, embedder, rows[start:start + batch_size]))
            if len(pending) > workers:
                yield _run(run, *pending.popleft().result())
        while pending:
            yield _run(run, *pending.popleft().result())


def decode_workers(device: torch.device) -> int:
    """Decoding threads: one on the CPU, whose cores run the network too; on
    a GPU the cores only decode, and one thread left CUDA extraction no
    faster than the single-threaded pipeline (BENCHMARKS.md, "GPU")."""
    if device.type == "cpu":
        return 1
    return max(1, min(MAX_GPU_DECODERS, (os.cpu_count() or 2) - 1))


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
