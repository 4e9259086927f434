"""Memory of the app under load on the raw REST route (`/gradio_api/call/recommend`:
upload, POST the call, read its event stream), as curl users and other
languages' clients call it, round after round, then while idle:

    python scripts/rest_memory.py --users 32 --rounds 7 --seconds 60 -- --no-manifest --catalogue DIR

Prints, as JSON, the app's resident memory after each round and after the
idle wait, the calls made and failed per round. Runs against `python app.py`
in the folder above this script, on 127.0.0.1."""

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from bench_startup import running_app
from load_test import print_report, query_images, rss_mb


def user(api: str, path: Path, catalogue: str, k: int, stop: float, outcomes: list):
    """One REST user until `stop`: upload, call, read the answer; each call's success into `outcomes`."""
    with httpx.Client(timeout=60) as http:
        while time.perf_counter() < stop:
            try:
                uploaded = http.post(api + "upload", files={"files": path.read_bytes()}).json()[0]
                data = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, catalogue, k, ""]
                event = http.post(api + "call/recommend", json={"data": data}).json()["event_id"]
                outcomes.append("event: complete" in http.get(api + f"call/recommend/{event}").text)
            except (httpx.HTTPError, ValueError, KeyError):
                outcomes.append(False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=60, help="length of a round")
    p.add_argument("--idle", type=float, default=120, help="seconds without calls after the last round")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", dest="json_out")
    p.add_argument("app_args", nargs="*", help="arguments for app.py (after --)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, running_app(args.app_args, 1800) as (client, info):
        name = client.predict(api_name="/catalogues")[0]["catalogue"]
        api, paths = info["url"] + "gradio_api/", query_images(Path(tmp), args.users)
        rounds = []
        for _ in range(args.rounds):
            outcomes, stop = [], time.perf_counter() + args.seconds
            users = [threading.Thread(target=user, args=(api, path, name, args.k, stop, outcomes)) for path in paths]
            for thread in users:
                thread.start()
            for thread in users:
                thread.join()
            rounds.append({"calls": sum(outcomes), "failures": len(outcomes) - sum(outcomes),
                           "rss_mb": round(rss_mb(info["pid"]))})
            print(json.dumps(rounds[-1]), file=sys.stderr, flush=True)
        time.sleep(args.idle)
        report = {"users": args.users, "seconds_per_round": args.seconds, "rounds": rounds,
                  "rss_mb_after_idle": round(rss_mb(info["pid"])), "idle_s": args.idle}
    print_report(report, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
