"""Backbone features of catalogue rows extracted with Ray Data, on a local Ray
instance or a cluster (`--engine ray`): the same numbers as the local loop.

The driver reads each row's undecoded image bytes (workers on other machines
need no shared filesystem) and ships one copy of the backbone; each actor of
a `map_batches` pool builds that model once, decodes with the same validating
`open_image` and runs `Embedder.features`. The pipeline itself runs in an
actor (Ray Data can't run through Ray Client), which hands back batches as
they complete, so a caller can store them as they arrive.
"""

import io
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retrieval.data.images import open_image, read_image_bytes
from retrieval.errors import LookalikeError

if TYPE_CHECKING:  # every Ray worker imports this module: the pipeline's needs no torch, none needs datasets
    from retrieval.data.catalogue import Catalogue
    from retrieval.embedding.embedder import Embedder

# a local instance stays small: it shares the machine with whatever started it
LOCAL_OBJECT_STORE_BYTES = 200_000_000
CONNECT_TIMEOUT_S = 5
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the retrieval package


def ray_features(catalogue: "Catalogue", embedder: "Embedder", rows, batch_size=8, workers=None, address=None,
                 gpus_per_worker=0) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Yield (rows done int64 (n,), features float32 (n, V, D), skipped messages)
    as batches complete, in any order. A row whose image can't be read is
    skipped with its one-line message, never fatal. `address`: None for a
    local instance (or the one this process already joined), "auto" or
    "ray://HOST:10001" for a cluster; `workers` actors (default: one per CPU,
    or per `gpus_per_worker` GPUs, of the cluster), each holding one model."""
    ray = _ray()
    import pyarrow  # installed with Ray Data

    rows = [int(r) for r in rows]
    if not rows:
        return
    started = _connect(ray, address, workers)
    try:
        # one block per batch: blocks are what the pool hands its actors, and what comes back
        blocks = [pyarrow.Table.from_pylist([_item(catalogue, row) for row in rows[i:i + batch_size]])
                  for i in range(0, len(rows), batch_size)]
        job = (blocks, _payload(embedder), batch_size, min(workers or _pool_size(ray, gpus_per_worker), len(blocks)),
               gpus_per_worker)
        # Ray Data can't run through Ray Client (ray://): the pipeline runs in an actor on the cluster
        pipeline = ray.remote(num_cpus=0)(_Pipeline).remote(*job)
        while (batch := ray.get(pipeline.next.remote())) is not None:
            ok = batch["error"] == ""
            yield (batch["row"][ok].astype(np.int64), batch["features"][ok].astype(np.float32, copy=False),
                   [str(message) for message in batch["error"][~ok]])
    finally:
        if started:
            ray.shutdown()


def _batches(blocks, payload, batch_size, workers, gpus_per_worker):
    """The pipeline: the blocks through a pool of `workers` extractors, each
    batch as it completes (numpy columns row, features, error)."""
    import ray.data

    dataset = ray.data.from_arrow(blocks)
    dataset.context.enable_progress_bars = False  # the caller shows its own progress
    results = dataset.map_batches(
        _Extractor, batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
        fn_constructor_args=(payload, gpus_per_worker > 0), num_gpus=gpus_per_worker or None,
        udf_modifying_row_count=False)
    yield from results.iter_batches(batch_size=None, batch_format="numpy")


class _Pipeline:
    """`_batches` run on the cluster, handed to the caller one batch at a time."""

    def __init__(self, *job):
        self.batches = _batches(*job)

    def next(self):
        return next(self.batches, None)


def _ray():
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise LookalikeError(f"--engine ray needs Ray Data: pip install 'ray[client,data]' ({e})") from e
    return ray


def _connect(ray, address, workers) -> bool:
    """Join Ray; True when this call joined it (and must leave: a local
    instance it started stops), False when the process had already joined."""
    if ray.is_initialized():
        return False
    try:
        if address is None:
            ray.init(num_cpus=workers, object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False,
                     log_to_driver=False)
            return True
        _reachable(address)
        # machines without this checkout import the package the driver has
        ray.init(address=address, runtime_env={"py_modules": [str(PACKAGE_DIR)]}, log_to_driver=False)
        return True
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        what = f"Ray cluster {address} could not be joined" if address else "a local Ray instance could not start"
        hint = " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token here: docs/ray.md)"
        raise LookalikeError(f"{what}: {' '.join(str(e).split()) or type(e).__name__}{hint if address else ''}") from e


def _reachable(address: str):
    """A HOST:PORT that answers, checked first: Ray itself retries an
    unreachable GCS address for minutes (a client address for 30 s)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except ValueError as e:
        raise LookalikeError(f"Ray address {address!r}: use auto, HOST:PORT or ray://HOST:10001") from e
    except OSError as e:
        raise LookalikeError(f"Ray cluster {address} is unreachable ({e.strerror or e}); "
                             "is its head running and the port open?") from e


def _pool_size(ray, gpus_per_worker) -> int:
    """Workers the cluster can hold at once: one per CPU, or per GPU share."""
    resources = ray.cluster_resources()
    if gpus_per_worker > 0:
        size = int(resources.get("GPU", 0) // gpus_per_worker)
        if size < 1:
            raise LookalikeError(f"the Ray cluster has {resources.get('GPU', 0):g} GPU(s), "
                                 f"fewer than one worker's {gpus_per_worker:g}")
        return size
    return max(1, int(resources.get("CPU", 1)))


def _item(catalogue: "Catalogue", row: int) -> dict:
    """One row as the workers get it: the image's bytes, or why it has none."""
    name = f"item {catalogue.ids[row]}"
    try:
        data, _ = read_image_bytes(catalogue.image_source(row), name)  # missing, empty, oversized: refused here
        return {"row": row, "name": name, "image": data, "error": ""}
    except LookalikeError as e:
        return {"row": row, "name": name, "image": b"", "error": str(e)}


def _payload(embedder: "Embedder") -> bytes:
    """The backbone (with any fine-tuned stages, and its runtime) and views,
    serialised once; its tensors can be loaded onto any device. A fresh copy:
    what the backbone has cached (a compiled network) stays here."""
    import torch
    from ray import cloudpickle  # pickles the registry's lambdas, which pickle can't

    from retrieval.embedding.embedder import Embedder

    buffer = io.BytesIO()
    backbone = replace(embedder.backbone, calibration=None)  # the catalogue stays here
    # int8: the driver's network itself (a worker's own would be calibrated apart: other features)
    network = embedder.backbone.network_bytes()
    torch.save((Embedder(backbone, embedder.views), network), buffer, pickle_module=cloudpickle)
    return buffer.getvalue()


class _Extractor:
    """A pool actor: builds the model once, then turns batches of image bytes
    into backbone features (zeros and a message for an unreadable image)."""

    def __init__(self, payload: bytes, gpu: bool):
        import torch

        device = torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")
        embedder, network = torch.load(io.BytesIO(payload), map_location=device, weights_only=False)
        backbone = embedder.backbone
        runtime = backbone.runtime if device.type == "cpu" else "torch"  # OpenVINO runs on CPUs only
        model = backbone.model.to(device, memory_format=torch.channels_last)
        # the driver's cache root may not exist here: the worker caches its converted network in its own
        self.embedder = replace(embedder, backbone=replace(backbone, model=model, device=device, runtime=runtime,
                                                           cache_dir=None))
        if network is not None and runtime == "openvino-int8":
            self.embedder.backbone.use_network(*network)

    def __call__(self, batch: dict) -> dict:
        errors = [str(e) for e in batch["error"]]
        images, ok = [], []
        for i, (data, name) in enumerate(zip(batch["image"], batch["name"])):
            if errors[i]:
                continue
            try:
                images.append(open_image(bytes(data), name=str(name)))
                ok.append(i)
            except LookalikeError as e:
                errors[i] = str(e)
        features = np.zeros((len(errors), len(self.embedder.views), self.embedder.backbone.dim), np.float32)
        if images:
            features[ok] = self.embedder.features(images)
        return {"row": batch["row"], "features": features, "error": np.array(errors, dtype=object)}
