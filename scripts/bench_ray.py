"""Ray Data extraction against the local loop on one catalogue's first N
images: images/s of each and the largest feature difference (BENCHMARKS.md).

    python scripts/bench_ray.py --catalogue ../shared/data/stanford-cars-thumbs --images 200 --workers 2
"""

import argparse
import os
import time

import numpy as np
import torch

from retrieval.data.catalogues import load_catalogue
from retrieval.embedding.embedder import create_embedder
from retrieval.extract.ray_data import ray_features


def local(catalogue, embedder, rows, batch_size):
    """The local path: decode, preprocess and run batch by batch in this
    process; returns the features and when the first batch was done."""
    out, first = [], None
    for i in range(0, len(rows), batch_size):
        batch = rows[i:i + batch_size]
        out.append(embedder.backbone_features(torch.stack([embedder.preprocess(catalogue.image(r)) for r in batch])))
        first = first or time.perf_counter()
    return np.concatenate(out), first


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogue", required=True)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    catalogue, embedder = load_catalogue(args.catalogue), create_embedder(args.backbone, device="cpu")
    rows = list(range(args.images))
    print(f"{args.backbone}, runtime {embedder.backbone.runtime}, torch threads {torch.get_num_threads()}, "
          f"load average before: {os.getloadavg()[0]:.2f}")

    started = time.perf_counter()
    expected, first = local(catalogue, embedder, rows, args.batch_size)
    end = time.perf_counter()
    print(f"local loop: {len(rows) / (end - started):.1f} images/s ({end - started:.1f} s, first batch after "
          f"{first - started:.1f} s); {(len(rows) - args.batch_size) / (end - first):.1f} images/s "
          "after the first batch")

    started = time.perf_counter()
    first, features, done = None, {}, 0
    for got, batch, _ in ray_features(catalogue, embedder, rows, batch_size=args.batch_size, workers=args.workers):
        if first is None:
            first, first_n = time.perf_counter(), len(got)
        features.update(zip(got.tolist(), batch))
        done += len(got)
    end = time.perf_counter()
    print(f"ray, {args.workers} actors x 1 CPU: {done / (end - started):.1f} images/s including Ray's start "
          f"({end - started:.1f} s, first batch after {first - started:.1f} s); "
          f"{(done - first_n) / (end - first):.1f} images/s after the first batch")
    difference = np.abs(np.stack([features[r] for r in rows]) - expected).max()
    print(f"rows {done} of {len(rows)}, max abs difference vs local {difference:.2e}; "
          f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
