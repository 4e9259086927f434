"""A catalogue of a million on one machine (issue #23): on a generated
class-folder catalogue of small images, with the tiny test backbone (what is
measured is everything around extraction: scanning, storing, indexing),
per size and index backend, each step as the user runs it, a command in a
process of its own: the first `index`, `index` again on the unchanged
catalogue, after adding 1,000 images, after removing 1,000; then queries
(item queries through the index, p50) and each step's peak memory."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from retrieval.evaluation.table import table
from retrieval.store.atomic import check_replaceable, mark
from retrieval.store.cache import check_root

PER_CLASS, CHANGED, QUERIES = 200, 1_000, 200
KIND = "bench-catalogue"  # the marker of a generated catalogue, the only kind of folder this bench deletes
SIZE = (24, 32)  # (height, width) of the generated photos: small JPEGs, ~1 KB each
# the step's command, run by this interpreter; prints its peak resident memory (MB) last
STEP = ("import resource, sys; from retrieval.cli.main import main; code = main(sys.argv[1:]); "
        "print('PEAK_RSS_MB', round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), file=sys.stderr); "
        "sys.exit(code)")


def generate(root: Path, n: int, start: int = 0, seed: int = 0) -> list:
    """Images start..start+n-1 in class folders of PER_CLASS (plain colours with noise); their paths."""
    rng = np.random.default_rng([seed, start])
    colours = rng.integers(0, 255, (n // PER_CLASS + 2, 3))
    paths = []
    for i in range(start, start + n):
        folder = root / f"c{i // PER_CLASS:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(colours[(i - start) // PER_CLASS] + rng.normal(0, 30, (*SIZE, 3)), 0, 255).astype(np.uint8)
        paths.append(folder / f"{i:07d}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=80)
    return paths


def run_step(args: list, log) -> dict:
    """One `python -m retrieval` command: its wall time and peak memory."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", STEP, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed: {done.stderr[-800:]}")
    peak = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_MB"))
    log(f"catalogue scale: {' '.join(args[:1])} {seconds:.1f}s, peak {peak} MB")
    return {"seconds": round(seconds, 2), "peak_rss_mb": peak}


def query_p50_ms(root: Path, cache: Path, backend: str) -> float:
    """Item queries through the built index (no backbone pass): median ms."""
    from retrieval.search.recommender import Recommender

    rec = Recommender.open(str(root), backbone="tiny_test", cache_dir=cache, index_backend=backend).build()
    rows = np.random.default_rng(0).choice(np.flatnonzero(rec.indexed), QUERIES, replace=False)
    times = []
    for row in rows.tolist():
        started = time.perf_counter()
        rec.search_embedding(rec.item_embedding(row), 10, exclude_rows=(row,))
        times.append(time.perf_counter() - started)
    return round(float(np.median(times)) * 1000, 2)


def catalogue_benchmark(sizes=(100_000, 1_000_000), backends=("usearch",), workdir=None, log=print,
                        backend_args=None) -> list:
    """[{items, backend, first_index_s, reopen_s, add_1000_s, remove_1000_s, query_p50_ms, peak_rss_mb}]."""
    rows = []
    base = Path(workdir or "/tmp/lookalike-catalogue-scale")
    for n in sizes:
        root = base / f"catalogue-{n}"
        if not (root / ".complete").is_file():  # generated once per size, reused by later runs
            check_replaceable(root, KIND, "the bench's catalogue folder")  # only a folder it made before
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            mark(root, KIND)
            started = time.perf_counter()
            generate(root, n)
            (root / ".complete").write_text(str(n))
            log(f"catalogue scale: generated {n:,} images in {time.perf_counter() - started:.0f}s")
        for backend in backends:
            cache = base / f"cache-{n}-{backend}"
            if cache.exists():
                check_root(cache, "bench")  # a Lookalike cache from an earlier run, nothing else
                shutil.rmtree(cache)
            extra = list((backend_args or {}).get(backend, []))
            common = ["--catalogue", str(root), "--backbone", "tiny_test", "--cache-dir", str(cache),
                      "--index-backend", backend, *extra]
            first = run_step(["index", *common], log)
            reopen = run_step(["index", *common], log)
            added = generate(root, CHANGED, start=n, seed=1)
            add = run_step(["index", *common], log)
            for path in added:
                path.unlink()
            remove = run_step(["index", *common], log)
            rows.append({"items": n, "backend": backend, "first_index_s": first["seconds"],
                         "reopen_s": reopen["seconds"], "add_1000_s": add["seconds"],
                         "remove_1000_s": remove["seconds"], "query_p50_ms": query_p50_ms(root, cache, backend),
                         "peak_rss_mb": max(s["peak_rss_mb"] for s in (first, reopen, add, remove))})
            log(f"catalogue scale: {json.dumps(rows[-1])}")
    return rows


def markdown(rows: list) -> str:
    return table(["items", "backend", "first index s", "reopen s", "add 1,000 s", "remove 1,000 s", "query p50 ms",
                  "peak RSS MB"],
                 [[f"{r['items']:,}", r["backend"], *(f"{r[k]}" for k in ("first_index_s", "reopen_s", "add_1000_s",
                   "remove_1000_s", "query_p50_ms", "peak_rss_mb"))] for r in rows], align="rlrrrrrr")

