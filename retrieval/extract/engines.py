"""What extracts the features the store lacks, by name: this process, or
Ray Data across a cluster. An engine maps (catalogue, embedder, rows,
batch size) to batches of (rows done, features (n, V, D), skip messages)."""

from retrieval.errors import LookalikeError
from retrieval.extract.local import local_engine


def make_engine(name: str = "local", address: str | None = None, workers: int | None = None,
                gpus_per_worker: float = 0):
    """An extraction engine by name: `local` (this process) or `ray` (Ray
    Data on a local instance, or the cluster at `address`; docs/ray.md)."""
    if name == "local":
        return local_engine
    if name == "ray":
        from retrieval.extract.ray_data import ray_features

        return lambda catalogue, embedder, rows, batch_size: ray_features(
            catalogue, embedder, rows, batch_size, workers=workers, address=address, gpus_per_worker=gpus_per_worker)
    raise LookalikeError(f"engine must be local or ray, not {name!r}")


