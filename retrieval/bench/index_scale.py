"""How the index backends scale: build time, size on disk, memory, and the
recall@10 / per-query latency curve over search effort, on seeded clustered
unit vectors (retrieval/vectors.py) at catalogue sizes up to a million.

The build time is the product's whole build: USearch's includes its tuning
against exact search; Annoy's is one build at the product's first tree
count (its tuning of search_k is timed apart, not at all in build_s).

Each build and each serving run happens in a fresh process, so that its
peak memory is its own; a server is modelled as one query at a time on one
thread against the index opened from disk (memory-mapped, page cache warm:
the file was just written and 100 untimed queries run first).

    python -m retrieval.index_bench --sizes 4000 100000 1000000 --json out.json
"""

import argparse
import json
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from retrieval.bench.synthetic import Clustered, default_clusters
from retrieval.evaluation.table import table
from retrieval.store.artefacts import disk_bytes
from retrieval.vectors import recall_at_k, top_k

K = 10
WARM_UP = 100
# Search effort swept per backend: Annoy's search_k (nodes inspected) and
# USearch's expansion_search (candidate list size); the tuned one is added.
ANNOY_SEARCH_K = (1_000, 2_500, 5_000, 10_000, 20_000, 40_000, 80_000)
USEARCH_EXPANSION = (16, 32, 64, 128, 256, 384, 512)


def index_benchmark(sizes=(4_000, 100_000, 1_000_000), dim=128, backends=("annoy", "usearch"), threads=2,
                    queries=1_000, seed=0, workdir=None, log=print) -> list:
    """One plain dict per (backend, size, search setting): backend, n, dim,
    setting, tuned (the setting the product's build picks), build_s, disk_mb,
    rss_mb (peak memory the build added over holding the vectors), serve_rss_mb
    (resident memory of the serving process after its queries, over a bare
    interpreter: mapped index pages included), recall_at_10 (against exact
    search over `queries` fresh queries), query_ms_p50, query_ms_p95 (wall),
    query_cpu_ms_p50, query_cpu_ms_p95 (the query thread's CPU time), params."""
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix="index-bench-") as tmp:
        for n in sizes:
            folder = Path(tmp) / str(n)
            folder.mkdir()
            started = time.perf_counter()
            _write_data(folder, n, dim, queries, seed)
            log(f"n={n:,}: vectors and exact top-{K} of {queries} queries in {time.perf_counter() - started:.1f} s")
            for backend in backends:
                built = _in_child(_BUILD[backend], str(folder), threads)
                log(f"n={n:,} {backend}: built in {built['build_s']:.1f} s, {built['disk_mb']:.0f} MB on disk, "
                    f"+{built['rss_mb']:.0f} MB peak, {built['params']}")
                for point in _in_child(_SERVE[backend], str(folder), built["tuned"]):
                    rows.append(dict(backend=backend, n=n, dim=dim, **{k: built[k] for k in (
                        "build_s", "disk_mb", "rss_mb", "params")}, **point))
                    log(f"  {point['setting']}: recall@10 {point['recall_at_10']:.4f}, "
                        f"p50 {point['query_ms_p50']:.3f} ms, p95 {point['query_ms_p95']:.3f} ms")
                shutil.rmtree(folder / backend)  # disk: a million-item index is a GB
    return rows


def _write_data(folder: Path, n, dim, n_queries, seed):
    """The catalogue vectors, fresh queries from the same clusters, their exact top-k."""
    data = Clustered(dim, default_clusters(n), seed)
    vectors, queries = data.points(n), data.queries(n_queries)
    np.save(folder / "vectors.npy", vectors)
    np.save(folder / "queries.npy", queries)
    np.save(folder / "truth.npy", top_k(vectors, queries, K)[0])


def _in_child(function, *args):
    """Run `function` in a fresh process (its memory figures are its own)."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _peak_mb() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux
    keeps that across exec, so a fresh child reports its parent's peak."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # kB


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _build_annoy(folder, threads):
    """Annoy as the product builds it first (sqrt(n) trees within [10, 100])
    on `threads` cores, and the search_k its audit then picks (its build
    doubles the trees while the audit fails, which at a million items
    takes far longer than one build)."""
    from annoy import AnnoyIndex

    from retrieval.index.annoy_index import first_trees, tune_search_k

    folder = Path(folder)
    vectors = np.load(folder / "vectors.npy")
    before = _rss_mb()
    started = time.perf_counter()
    n_trees = first_trees(len(vectors))
    annoy = AnnoyIndex(vectors.shape[1], "angular")
    annoy.set_seed(0)
    for i, v in enumerate(vectors):
        annoy.add_item(i, v)
    annoy.build(n_trees, n_jobs=threads)
    (folder / "annoy").mkdir()
    annoy.save(str(folder / "annoy" / "index.ann"))
    build_s = time.perf_counter() - started
    search_k, recall, _ = tune_search_k(annoy, vectors, n_trees)
    return dict(build_s=round(build_s, 2), disk_mb=round(disk_bytes(folder / "annoy") / 2**20, 1),
                rss_mb=round(_peak_mb() - before, 1), tuned=search_k,
                params=f"n_trees={n_trees} (audit recall@10 {recall:.4f})")


def _serve_annoy(folder, tuned):
    from annoy import AnnoyIndex

    folder = Path(folder)
    queries, truth = np.load(folder / "queries.npy"), np.load(folder / "truth.npy")
    bare = _rss_mb()
    annoy = AnnoyIndex(queries.shape[1], "angular")
    annoy.load(str(folder / "annoy" / "index.ann"))  # memory-mapped
    as_lists = queries.tolist()
    points = []
    for search_k in sorted({*ANNOY_SEARCH_K, tuned}):
        def one(i, search_k=search_k):
            return annoy.get_nns_by_vector(as_lists[i], K, search_k=search_k)
        points.append(dict(_curve_point(one, len(queries), truth), setting=f"search_k={search_k}",
                           tuned=search_k == tuned))
    return [dict(p, serve_rss_mb=round(_rss_mb() - bare, 1)) for p in points]


def _build_usearch(folder, threads):
    """The product's build: tuned until its audit reaches recall@10 0.99."""
    from retrieval.index.usearch_index import UsearchIndex

    folder = Path(folder)
    vectors = np.load(folder / "vectors.npy")
    before = _rss_mb()
    started = time.perf_counter()
    index = UsearchIndex.build(folder / "usearch", vectors, {}, threads=threads)
    meta = index.meta
    return dict(build_s=round(time.perf_counter() - started, 2),
                disk_mb=round(disk_bytes(folder / "usearch") / 2**20, 1),
                rss_mb=round(_peak_mb() - before, 1), tuned=meta["expansion_search"],
                params=(f"connectivity={meta['connectivity']} expansion_add={meta['expansion_add']} "
                        f"(audit recall@10 {meta['recall_at_10']})"))


def _serve_usearch(folder, tuned):
    from retrieval.index.backends import open_index

    folder = Path(folder)
    queries, truth = np.load(folder / "queries.npy"), np.load(folder / "truth.npy")
    bare = _rss_mb()
    index = open_index(folder / "usearch", {})  # memory-mapped view
    points = []
    for expansion in sorted({*USEARCH_EXPANSION, tuned}):
        index.usearch.expansion_search = expansion

        def one(i):
            return index.search(queries[i], K)[0][0]
        points.append(dict(_curve_point(one, len(queries), truth), setting=f"expansion_search={expansion}",
                           tuned=expansion == tuned))
    return [dict(p, serve_rss_mb=round(_rss_mb() - bare, 1)) for p in points]


def _curve_point(search_one, n_queries, truth) -> dict:
    """Recall@10 and per-query latency of `search_one(i)`, one query at a
    time: wall time (what a user waits) and the thread's CPU time (what the
    query costs, unaffected by other processes on a shared machine)."""
    for i in range(min(WARM_UP, n_queries)):
        search_one(i)
    found, wall, cpu = [], [], []
    for i in range(n_queries):
        started, started_cpu = time.perf_counter(), time.thread_time()
        found.append(search_one(i))
        wall.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - started_cpu)
    wall, cpu = np.array(wall) * 1000, np.array(cpu) * 1000
    return dict(recall_at_10=round(recall_at_k(found, truth), 4), query_ms_p50=round(float(np.median(wall)), 3),
                query_ms_p95=round(float(np.percentile(wall, 95)), 3),
                query_cpu_ms_p50=round(float(np.median(cpu)), 3),
                query_cpu_ms_p95=round(float(np.percentile(cpu, 95)), 3))


_BUILD = {"annoy": _build_annoy, "usearch": _build_usearch}
_SERVE = {"annoy": _serve_annoy, "usearch": _serve_usearch}


def markdown(rows) -> str:
    """The rows as a markdown table."""
    head = ("backend", "n", "setting", "recall@10", "p50 ms", "p95 ms", "CPU p50 ms", "build s", "disk MB",
            "build +RSS MB", "serve RSS MB", "build params")
    cells = [(r["backend"], f"{r['n']:,}", f"**{r['setting']}** (tuned)" if r["tuned"] else r["setting"],
              f"{r['recall_at_10']:.4f}", f"{r['query_ms_p50']:.3f}", f"{r['query_ms_p95']:.3f}",
              f"{r['query_cpu_ms_p50']:.3f}", f"{r['build_s']:.1f}", f"{r['disk_mb']:.0f}", f"{r['rss_mb']:.0f}",
              f"{r['serve_rss_mb']:.0f}", r["params"]) for r in rows]
    return table(head, cells, align="l" * len(head))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m retrieval.index_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--backends", nargs="+", choices=sorted(_BUILD), default=["annoy", "usearch"])
    parser.add_argument("--threads", type=int, default=2, help="build threads (queries are single-threaded)")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--workdir", help="where the temporary vectors and indexes go (default: the temp dir)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = index_benchmark(args.sizes, args.dim, args.backends, args.threads, args.queries, workdir=args.workdir)
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
