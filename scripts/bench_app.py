"""Measure the demo: start-up time (Service + index builds, cold with an empty
cache dir or warm) and the server-side latency of a /recommend query (both
embeddings, one backbone pass), in-process and through gradio_client.

    python scripts/bench_app.py --catalogue ../shared/data/stanford-cars-thumbs --head runs/cars
    python scripts/bench_app.py ... --cold      # a fresh, empty cache dir
"""

import argparse
import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from gradio_client import Client, handle_file

from retrieval.search.service import Service
from retrieval.search.spaces import CatalogueConfig
from retrieval.store.atomic import write_json
from ui.page import build_demo, launch_options


def percentiles(seconds) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "max_ms": round(float(ms.max()), 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalogue", default="../shared/data/stanford-cars-thumbs")
    p.add_argument("--head", help="RUN_DIR of the fine-tuned head (default: none, pretrained side only)")
    p.add_argument("--backbone", default="auto")
    p.add_argument("--per-class", type=int)
    p.add_argument("--classes")
    p.add_argument("--cache-dir", help="default: the app's cache ($LOOKALIKE_CACHE or the user cache dir)")
    p.add_argument("--cold", action="store_true", help="start from a fresh, empty cache dir")
    p.add_argument("--queries", type=int, default=50, help="in-process queries (default 50)")
    p.add_argument("--client-queries", type=int, default=20, help="queries through gradio_client (default 20)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice, as the app)")
    p.add_argument("--json", dest="json_out", help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="lookalike-cold-") if args.cold else nullcontext(args.cache_dir) as cache:
        report = measure(args, cache)
    if report is None:
        return 2
    for key, value in report.items():
        print(f"{key:<28} {value}")
    if args.json_out:
        write_json(args.json_out, report)
    return 0


def measure(args, cache) -> dict | None:
    config = CatalogueConfig("bench", args.catalogue, args.backbone, args.head, args.per_class, args.classes)

    started = time.perf_counter()
    service = Service([config], cache_dir=cache)
    opened = time.perf_counter()
    service.build_all()
    built = time.perf_counter()
    served = service.get("bench")
    if not served.ready:
        print(f"error: {served.state}", file=sys.stderr)
        return None
    if served.finetuned is None:
        print(f"note: {served.finetuned_note}", file=sys.stderr)
    cat = served.catalogue
    rows = np.linspace(0, len(cat) - 1, args.queries).astype(int)
    queries = [cat.image(int(r)) for r in rows]  # decoded up front: the app gets an upload

    def timed(fn, items):
        out = []
        for item in items:
            t = time.perf_counter()
            fn(item)
            out.append(time.perf_counter() - t)
        return out

    service.recommend(queries[0], "bench", args.k)  # warm-up (first call pays lazy loads)
    recommend = timed(lambda im: service.recommend(im, "bench", args.k), queries)
    answer_only = timed(lambda im: service.answer(im, "bench", args.k), queries)

    demo = build_demo(service)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1",
                            **launch_options(service))
    try:
        client = Client(url, verbose=False)
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, im in enumerate(queries[:args.client_queries]):
                paths.append(Path(tmp) / f"q{i}.png")
                im.save(paths[-1])
            client.predict(handle_file(str(paths[0])), "bench", args.k, api_name="/recommend")
            via_client = timed(lambda path: client.predict(handle_file(str(path)), "bench", args.k,
                                                           api_name="/recommend"), paths)
    finally:
        demo.close()

    return {
        "catalogue": args.catalogue, "per_class": args.per_class, "classes": args.classes,
        "items": len(cat), "backbone": served.backbone,
        "finetuned": served.finetuned.embedding_name if served.finetuned else None,
        "k": args.k, "torch_threads": torch.get_num_threads(), "cold_cache": args.cold,
        "startup_s": {"open": round(opened - started, 2), "build": round(built - opened, 2),
                      "total": round(built - started, 2)},
        "recommend_in_process": percentiles(recommend),
        "search_only_in_process": percentiles(answer_only),
        "recommend_via_gradio_client": percentiles(via_client),
    }


if __name__ == "__main__":
    sys.exit(main())
