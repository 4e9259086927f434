"""Measure how long `python app.py` takes to start, as a user sees it: seconds
from launching the process until the page answers, and until every catalogue
it serves is ready (its /catalogues status is no longer "building").

    python scripts/bench_startup.py --runs 3                 # app.py with spaces.yaml
    python scripts/bench_startup.py --runs 1 -- --no-manifest --catalogue DIR

Arguments after `--` go to app.py. The cache is the app's own
($LOOKALIKE_CACHE or the user cache dir): warm unless you point it elsewhere.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from gradio_client import Client

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def running_app(app_args, timeout: float, env=None, stderr=subprocess.DEVNULL):
    """Start app.py on a free port; once its page answers and no catalogue is
    building any more, yield (client, info: page_up_s, all_ready_s (seconds
    from launch), url, pid); stop it on leaving. `stderr`: where its log goes (a file, not
    an unread pipe, which would stall it once full)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = (env or os.environ) | {"GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    started = time.perf_counter()
    app = subprocess.Popen([sys.executable, "app.py", *app_args], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        while not page_answers(url):
            if app.poll() is not None:
                raise RuntimeError(f"app.py exited with {app.returncode} before its page answered")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"the page did not answer within {timeout:.0f} s")
            time.sleep(0.1)
        page_up = time.perf_counter() - started
        client = Client(url, verbose=False)
        while any(c["status"] == "building" for c in client.predict(api_name="/catalogues")):
            waited = time.perf_counter() - started
            if waited > timeout:
                raise RuntimeError(f"catalogues still building after {timeout:.0f} s")
            # each poll costs the app some CPU: poll rarely once it is clearly a cold start
            time.sleep(0.2 if waited < 60 else 2.0)
        yield client, {"page_up_s": page_up, "all_ready_s": time.perf_counter() - started, "url": url,
                       "pid": app.pid}
    finally:
        app.terminate()
        app.wait(timeout=30)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=3600, help="seconds before giving up (default 3600)")
    p.add_argument("app_args", nargs="*", help="arguments for app.py (after --)")
    args = p.parse_args(argv)
    runs = []
    for i in range(args.runs):
        try:
            with running_app(args.app_args, args.timeout) as (_, timings):
                runs.append(timings)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"run {i + 1}: page up {runs[-1]['page_up_s']:.1f} s, all ready {runs[-1]['all_ready_s']:.1f} s",
              flush=True)
    for key in ("page_up_s", "all_ready_s"):
        print(f"median {key}: {statistics.median(r[key] for r in runs):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
