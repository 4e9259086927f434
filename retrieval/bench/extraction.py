"""`python -m retrieval bench`: the speed figures of issue #12 in one run on
one catalogue (the car thumbnails by default), printed as a table and
written as JSON.

- extraction images/s: a naive loop (one image at a time at 224x224, one
  view, eager torch: where the seed project started), today's eager pipeline
  (our preprocessing and views, batches of 8, torch), the product's engine
  (decoding in a thread) with the default runtime and, on the CPU, with each
  OpenVINO runtime: float32 (the same features), bfloat16 and int8 (NNCF,
  when installed; calibrated on the sample); each ratio against the
  eager pipeline, and R@1 of each one's features on the same images;
- single-query latency p50/p95 end to end (file -> results) for the
  pretrained embedding and, with --head, the fine-tuned one;
- the time to add 20 images to the catalogue: features of the rest stored,
  index for the grown catalogue cold;
- index build, recall@10 and latency at the --index-sizes (index_bench.py);
- peak memory of this process.
"""

import functools
import json
import logging
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from retrieval.data.catalogue import Catalogue
from retrieval.data.catalogues import load_catalogue
from retrieval.data.subsets import first_per_class
from retrieval.embedding.embedder import create_embedder
from retrieval.evaluation.metrics import retrieval_metrics
from retrieval.extract.local import local_engine
from retrieval.models import views as view_ops
from retrieval.models.backbones import default_device
from retrieval.models.quantise import has_nncf
from retrieval.search.recommender import Recommender

log = logging.getLogger(__name__)

ADDED = 20
QUERIES = 50
NAIVE_SIZE = (224, 224)


def bench(catalogue_spec: str, backbone="efficientnet_lite0", head=None, per_class=4, rounds=2,
          index_sizes=(4_000, 100_000, 1_000_000), index_backends=("annoy", "usearch"), cache_dir=None,
          filter_sizes=(4_000, 100_000), extraction=True, catalogue_sizes=(), catalogue_backends=("usearch",)) -> dict:
    """Every figure above as one JSON-able dict (keys in the module docstring)."""
    results = {"torch_threads": torch.get_num_threads()}
    if extraction:
        results.update(extraction_figures(catalogue_spec, backbone, head, per_class, rounds, cache_dir))
    if index_sizes:
        from retrieval.bench.index_scale import index_benchmark

        results["index"] = index_benchmark(sizes=index_sizes, backends=index_backends, log=log.info)
        at_1m = _tuned_usearch(results["index"], 1_000_000)
        if at_1m:
            results["index_1m_recall_at_10"] = at_1m["recall_at_10"]
            results["index_1m_query_ms"] = at_1m["query_ms_p50"]
    if filter_sizes:
        from retrieval.bench.filters import filter_benchmark

        results["filters"] = filter_benchmark(filter_sizes, log=log.info)
    if catalogue_sizes:
        from retrieval.bench.catalogue_scale import catalogue_benchmark

        results["catalogue_scale"] = catalogue_benchmark(catalogue_sizes, catalogue_backends, log=log.info)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return results


def extraction_figures(catalogue_spec, backbone, head, per_class, rounds, cache_dir) -> dict:
    """Extraction speed and quality by pipeline, adding images, query latency."""
    catalogue = load_catalogue(catalogue_spec)
    results = {"catalogue": catalogue_spec, "n_catalogue": len(catalogue)}
    results["embed"] = embed_throughput(first_per_class(catalogue, per_class), backbone, rounds)
    by_name = {row["pipeline"]: row for row in results["embed"]}
    results["embed_images_per_s"] = by_name["product"]["images_per_s"]
    results["embed_speedup"] = by_name["product"]["speedup"]
    results["device"] = str(default_device())
    results["embed_speedup_same_features"] = by_name.get("openvino", {}).get("speedup")
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-") as scratch:
        cache = Path(cache_dir) if cache_dir else Path(scratch)
        results.update(add_images(catalogue, backbone, cache))
        results["queries"] = query_latency(catalogue, backbone, head, cache)
    results["query_p50_ms"] = results["queries"][0]["p50_ms"]
    return results


def embed_throughput(sample: Catalogue, backbone: str, rounds: int) -> list:
    """images/s of each pipeline over the same images, rounds interleaved so
    that a busy machine slows them alike; the median round counts."""
    torch_embedder, product = create_embedder(backbone, runtime="torch"), create_embedder(backbone)
    pipelines = {
        "naive": lambda images: _naive(images, torch_embedder),
        "eager": lambda images: _eager(images, torch_embedder),
        "product": lambda images: _product(images, product),
    }
    if product.backbone.device.type == "cpu":  # OpenVINO runs on the CPU only
        for runtime in ("openvino", "openvino-bf16", *(["openvino-int8"] if has_nncf() else [])):
            embedder = create_embedder(backbone, runtime=runtime)
            embedder.backbone.calibrate_on(sample)  # int8: as the product calibrates on the catalogue it serves
            pipelines[runtime] = functools.partial(_product, embedder=embedder)
    product.backbone.calibrate_on(sample)
    first = sample.restrict(range(min(8, len(sample))))
    for pipeline in pipelines.values():  # networks converted, first-call costs paid
        pipeline(first)
    seconds, features = {name: [] for name in pipelines}, {}
    for _ in range(rounds):
        for name, pipeline in pipelines.items():
            started = time.perf_counter()
            features[name] = pipeline(sample)
            seconds[name].append(time.perf_counter() - started)
    labels = np.asarray(sample.labels)
    eager_s = statistics.median(seconds["eager"])
    rows = []
    for name in pipelines:
        median = statistics.median(seconds[name])
        embeddings = view_ops.pool(features[name])
        runtime = {"naive": "torch", "eager": "torch", "product": product.backbone.runtime}.get(name, name)
        rows.append({"pipeline": name, "runtime": runtime, "images": len(sample),
                     "images_per_s": round(len(sample) / median, 2),
                     "speedup": round(eager_s / median, 2),
                     "recall_at_1": round(retrieval_metrics(embeddings, labels, progress=False)["recall_at_1"], 4),
                     "max_abs_diff_vs_eager": None if name == "naive" else
                     float(np.abs(features[name] - features["eager"]).max())})
    return rows


def _naive(sample: Catalogue, embedder) -> np.ndarray:
    """The seed project's loop: decode, resize to 224x224, one image, one view."""
    from torchvision import transforms as T

    transform = T.Compose([T.Resize(NAIVE_SIZE), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    out = []
    with torch.inference_mode():
        for row in range(len(sample)):
            x = transform(sample.image(row))[None].to(embedder.backbone.device)
            out.append(embedder.backbone.model(x).cpu().numpy()[:, None])
    return np.concatenate(out)


def _eager(sample: Catalogue, embedder) -> np.ndarray:
    """Today's pipeline before this issue: decode and preprocess in the main
    thread, batches of 8 through eager torch."""
    out = []
    for start in range(0, len(sample), 8):
        batch = torch.stack([embedder.preprocess(sample.image(r)) for r in range(start, min(start + 8, len(sample)))])
        out.append(embedder.backbone_features(batch))
    return np.concatenate(out)


def _product(sample: Catalogue, embedder) -> np.ndarray:
    """The product's extraction engine (what `index` runs), store left out."""
    return np.concatenate([features for _, features, _ in local_engine(sample, embedder, range(len(sample)))])


def add_images(catalogue: Catalogue, backbone: str, cache: Path) -> dict:
    """Seconds to serve the catalogue grown by ADDED images: the others'
    features stored, its index cold; and whether each new image finds itself first."""
    embedder = create_embedder(backbone)
    before = catalogue.restrict(range(len(catalogue) - ADDED))
    started = time.perf_counter()
    Recommender(before, embedder, cache).build()
    cold = time.perf_counter() - started
    started = time.perf_counter()
    grown = Recommender(catalogue, embedder, cache).build()
    added = time.perf_counter() - started
    new_rows = range(len(catalogue) - ADDED, len(catalogue))
    found = sum(grown.search(catalogue.image(row), k=1)[0].row == row for row in new_rows)
    return {"cold_index_seconds": round(cold, 2), "add_20_seconds": round(added, 2),
            "added_found_first": f"{found}/{ADDED}"}


def query_latency(catalogue: Catalogue, backbone: str, head, cache: Path) -> list:
    """p50/p95 ms of Recommender.search from an image file, per embedding."""
    embedders = [create_embedder(backbone)] + ([create_embedder(backbone, head)] if head else [])
    step = max(1, len(catalogue) // QUERIES)
    sources = [catalogue.image_source(row) for row in range(0, len(catalogue), step)][:QUERIES]
    rows = []
    for embedder in embedders:
        rec = Recommender(catalogue, embedder, cache).build()
        rec.search(sources[0])  # first-call costs
        times = []
        for source in sources:
            started = time.perf_counter()
            rec.search(source, k=5)
            times.append((time.perf_counter() - started) * 1000)
        rows.append({"embedding": embedder.name, "queries": len(times),
                     "p50_ms": round(float(np.percentile(times, 50)), 1),
                     "p95_ms": round(float(np.percentile(times, 95)), 1)})
    return rows


def _tuned_usearch(rows: list, n: int) -> dict | None:
    return next((r for r in rows if r["backend"] == "usearch" and r["n"] == n and r.get("tuned")), None)


def markdown(results: dict) -> str:
    """The figures as tables for BENCHMARKS.md."""
    lines = extraction_markdown(results) if "embed" in results else []
    if "index" in results:
        from retrieval.bench.index_scale import markdown as index_markdown

        lines += ["", index_markdown(results["index"])]
    if "filters" in results:
        from retrieval.bench.filters import markdown as filters_markdown

        lines += ["", filters_markdown(results["filters"])]
    if "catalogue_scale" in results:
        from retrieval.bench.catalogue_scale import markdown as scale_markdown

        lines += ["", scale_markdown(results["catalogue_scale"])]
    lines += ["", f"Peak RSS of the bench process {results['peak_rss_mb']} MB."]
    return "\n".join(lines)


def extraction_markdown(results: dict) -> list:
    lines = [f"Extraction on {results['device']}:", "",
             "| pipeline | runtime | images | images/s | vs eager | R@1 | max abs diff vs eager |",
             "|---|---|---|---|---|---|---|"]
    for r in results["embed"]:
        diff = "-" if r["max_abs_diff_vs_eager"] is None else f"{r['max_abs_diff_vs_eager']:.1e}"
        lines.append(f"| {r['pipeline']} | {r['runtime']} | {r['images']} | {r['images_per_s']} | {r['speedup']}x | "
                     f"{r['recall_at_1']:.3f} | {diff} |")
    lines += ["", "| embedding | queries | p50 ms | p95 ms |", "|---|---|---|---|"]
    lines += [f"| {r['embedding']} | {r['queries']} | {r['p50_ms']} | {r['p95_ms']} |" for r in results["queries"]]
    lines += ["", f"Adding {ADDED} images to the {results['n_catalogue'] - ADDED:,}-image catalogue: "
                  f"{results['add_20_seconds']} s (its cold build: {results['cold_index_seconds']} s); "
                  f"new images found first: {results['added_found_first']}."]
    return lines


def write_results(results: dict, path):
    from retrieval.store.atomic import write_json

    write_json(path, json.loads(json.dumps(results, default=float)))
