"""`python app.py`: the Lookalike Gradio demo. It only wires the page (ui/)
to retrieval.search's Service, which serves the catalogues of spaces.yaml
(plus any given with --catalogue) and answers queries with render-ready
records."""

import argparse
import logging
import os
import sys
from pathlib import Path

from retrieval.cli.allocator import keep_freed_memory
from retrieval.errors import LookalikeError
from retrieval.search.service import Service
from retrieval.search.spaces import CatalogueConfig, load_manifest, on_space
from ui.page import build_demo, launch_options

ROOT = Path(__file__).resolve().parent


def train_missing_head(recommender, run_dir, progress):
    """The app's trainer: a catalogue's configured head that does not exist
    yet is trained once its features are there (python -m finetune's defaults)."""
    from finetune.pipeline import finetune

    finetune(recommender, run_dir, source={"catalogue": recommender.catalogue.spec}, progress=progress)


class _AddCatalogue(argparse.Action):
    """--catalogue SPEC starts a catalogue; the --head after it belongs to it."""

    def __call__(self, parser, namespace, value, option_string=None):
        extra = getattr(namespace, "extra", None) or []
        if option_string == "--head":
            if not extra:
                parser.error("--head must follow the --catalogue it belongs to")
            extra[-1]["head"] = value
        else:
            extra.append({"spec": value, "name": Path(value.rstrip("/")).name or value})
        namespace.extra = extra


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--catalogue", action=_AddCatalogue, metavar="SPEC",
                   help="serve this catalogue too (repeatable); see `python -m retrieval index -h`")
    p.add_argument("--head", action=_AddCatalogue, metavar="RUN_DIR",
                   help="fine-tuned head (RUN_DIR or hub:REPO_ID) of the --catalogue before it")
    p.add_argument("--backbone", default="auto", help="backbone of --catalogue catalogues (default auto)")
    p.add_argument("--per-class", type=int, help="keep the first N images per class of --catalogue catalogues")
    p.add_argument("--manifest", default=str(ROOT / "spaces.yaml"), help="deploy manifest (default spaces.yaml)")
    p.add_argument("--no-manifest", action="store_true", help="serve only the --catalogue catalogues")
    p.add_argument("--cache-dir", help="cache root (default $LOOKALIKE_CACHE or the user cache dir)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--reports", default=str(ROOT / "reports"),
                   help="folder of reports, one per catalogue name (python -m retrieval report; default reports/)")
    args = p.parse_args(argv)
    args.extra = getattr(args, "extra", None) or []
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up requests
    keep_freed_memory()  # a CNN's activations reuse memory instead of page-faulting it anew
    try:
        configs = [] if args.no_manifest else load_manifest(args.manifest)
        configs += [CatalogueConfig(backbone=args.backbone, per_class=args.per_class, **c) for c in args.extra]
        service = Service(configs, cache_dir=args.cache_dir, device=args.device, trainer=train_missing_head)
    except LookalikeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    demo = build_demo(service, args.reports)
    host = os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space() else "127.0.0.1")
    demo.launch(server_name=host, server_port=int(os.environ.get("GRADIO_SERVER_PORT") or 7860),
                prevent_thread_lock=True, **launch_options(service))
    # The page is up; build in the main thread, whose malloc arena reuses the
    # feature extraction's memory (a thread's arena page-faults it anew: BENCHMARKS.md)
    service.build_all()
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
