"""Load on the served app, as many users of the API make it: N gradio_client
users, each sending /recommend queries back to back for T seconds, against
`python app.py` started on 127.0.0.1 (bounded: nothing leaves this machine).
Reports requests/s, failures, latency percentiles and the app's memory
(resident set size, sampled every second, with its trend).

The clients share the machine with the app, so their own CPU lowers the
figure. They connect with ssl_verify=False: the app is plain http on
127.0.0.1, so no TLS is involved, but by default gradio_client builds a new
certificate-verifying TLS context (the whole CA bundle, ~20 ms of CPU) for
every HTTP call it makes, several per query. --ssl-verify keeps that default,
to compare with earlier runs.

    python scripts/load_test.py --users 32 --seconds 60 -- --no-manifest \\
        --catalogue ../shared/data/stanford-cars-thumbs --head runs/cars
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bench_startup import running_app
from gradio_client import Client, handle_file
from PIL import Image


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def query_images(folder: Path, n: int) -> list:
    """n different small photos to upload (noise: the load, not the answers, is measured)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(folder / f"query{i}.jpg")
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--catalogue-name", help="catalogue to query (default: the first served)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the app to be ready")
    p.add_argument("--ssl-verify", action="store_true",
                   help="clients build a verifying TLS context per HTTP call (gradio_client's default)")
    p.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    p.add_argument("app_args", nargs="*", help="arguments for app.py (after --)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, running_app(args.app_args, args.timeout) as (client, info):
        name = args.catalogue_name or client.predict(api_name="/catalogues")[0]["catalogue"]
        paths = query_images(Path(tmp), args.users)
        latencies, failures, memory = [], [], []
        lock, stop = threading.Lock(), time.perf_counter() + args.seconds

        def user(path):
            own = Client(info["url"], verbose=False, ssl_verify=args.ssl_verify)
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    own.predict(handle_file(str(path)), name, args.k, api_name="/recommend")
                    with lock:
                        latencies.append(time.perf_counter() - started)
                except Exception as e:  # counted, not fatal: a failure is a result here
                    with lock:
                        failures.append(f"{type(e).__name__}: {e}")

        began, cpu_before, own_before = time.perf_counter(), cpu_seconds(info["pid"]), cpu_seconds(os.getpid())
        users = [threading.Thread(target=user, args=(path,)) for path in paths]
        for thread in users:
            thread.start()
        while any(thread.is_alive() for thread in users):
            memory.append((time.perf_counter() - began, rss_mb(info["pid"])))
            time.sleep(1)
        elapsed, app_cpu = time.perf_counter() - began, cpu_seconds(info["pid"]) - cpu_before
        client_cpu = cpu_seconds(os.getpid()) - own_before
    ms = np.asarray(latencies) * 1000
    seconds, mb = np.asarray(memory).T
    report = {
        "users": args.users, "ssl_verify": args.ssl_verify, "seconds": round(elapsed, 1),
        "requests": len(latencies), "failures": len(failures),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "app_cpu_ms_per_request": round(1000 * app_cpu / max(len(latencies), 1), 1),
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(len(latencies), 1), 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "rss_mb_first_last_max": [round(float(mb[0])), round(float(mb[-1])), round(float(mb.max()))],
        "rss_mb_at_0_25_50_75_100_percent": [round(float(mb[round(q * (len(mb) - 1))]))
                                             for q in (0, .25, .5, .75, 1)],
        "rss_mb_per_minute_trend_second_half": round(float(np.polyfit(seconds[len(mb) // 2:], mb[len(mb) // 2:], 1)[0]
                                                           * 60), 1),
        "first_failures": failures[:3],
    }
    print_report(report, args.json_out)
    return 0


def print_report(report: dict, json_out=None):
    """The figures as JSON on stdout, and in `json_out` when given."""
    print(json.dumps(report, indent=2))
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
