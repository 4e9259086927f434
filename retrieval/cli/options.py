"""The flags several commands share, declared once: which catalogue (and
which part of it), which model, where the cache is, what runs extraction."""

import argparse

from retrieval.errors import LookalikeError
from retrieval.index.backends import CHOICES as INDEX_BACKENDS
from retrieval.models.backbones import available_backbones, backbone_spec

CATALOGUE_HELP = ("DIR (class folders or a flat folder), FILE.csv|.jsonl|.parquet (a manifest), "
                  "fashion-mnist[:SPLIT] or hub:OWNER/NAME[:SPLIT]")


def add_catalogue(p: argparse.ArgumentParser, default=None, classes_help="keep these classes, source numbering, "
                  "e.g. 1-49,60 (Stanford Cars: devkit ids 1-196; others: 0-based labels)"):
    p.add_argument("--catalogue", required=default is None, default=default,
                   help=CATALOGUE_HELP + (f" (default {default})" if default else ""))
    p.add_argument("--classes", help=classes_help)
    p.add_argument("--per-class", type=int, metavar="N", help="keep the first N images of each class")
    p.add_argument("--label-column", metavar="NAME", help="a manifest's class column (default: `label`, if any)")
    p.add_argument("--rehash", action="store_true",
                   help="read every image file again (by default one whose size, time and inode are unchanged "
                        "since it was last read keeps its content key: the README says what that trusts)")


def add_cache_dir(p: argparse.ArgumentParser, help="cache root (default $LOOKALIKE_CACHE or the user cache dir)"):
    p.add_argument("--cache-dir", help=help)


def add_model(p: argparse.ArgumentParser):
    """Backbone, device and cache root."""
    p.add_argument("--backbone", default="auto", help="auto (default), " + ", ".join(available_backbones()))
    add_cache_dir(p)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def add_engine(p: argparse.ArgumentParser):
    """Head, runtime, index backend and what extracts features."""
    p.add_argument("--head", help="fine-tuned embedding: a RUN_DIR from `python -m finetune` or hub:OWNER/NAME "
                                  "(default: the pretrained features)")
    p.add_argument("--runtime", help="what runs the backbone: auto (default: OpenVINO on the CPU, in int8 where "
                                     "the CPU has VNNI and NNCF is installed, else in bfloat16 where the CPU has "
                                     "it), torch, openvino, openvino-bf16, openvino-int8 (quantised by NNCF, "
                                     "calibrated on the catalogue) (default $LOOKALIKE_RUNTIME)")
    p.add_argument("--index-backend", default="auto", choices=INDEX_BACKENDS,
                   help="auto (default): Annoy up to 100,000 items, USearch (HNSW) beyond (BENCHMARKS.md); "
                        "exact: exact search")
    p.add_argument("--milvus-uri", metavar="URI", help="with --index-backend milvus: http://HOST:19530 for a Milvus "
                   "standalone or cluster (default: a Milvus Lite database in the cache; docs/scaling.md)")
    p.add_argument("--milvus-token", metavar="TOKEN", help="with --index-backend milvus: the server's token "
                   "(default $LOOKALIKE_MILVUS_TOKEN, which keeps it out of the shell's history)")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="what extracts missing features: this process (default) or Ray Data (docs/ray.md)")
    p.add_argument("--ray-address", help="with --engine ray: ray://HOST:10001 or auto (default: a local instance)")
    p.add_argument("--ray-workers", type=int, metavar="N",
                   help="with --engine ray: workers, one model each (default: one per cluster CPU or GPU share)")
    p.add_argument("--ray-gpus-per-worker", type=float, default=0, metavar="G",
                   help="with --engine ray: GPUs per worker (default 0: CPU workers)")


def check(parser: argparse.ArgumentParser, args):
    """Mistakes in the shared flags (argparse's one line, exit 2), before any model loads."""
    if getattr(args, "backbone", "auto") != "auto":
        try:
            backbone_spec(args.backbone)
        except LookalikeError as e:
            parser.error(str(e))
    if getattr(args, "per_class", None) is not None and args.per_class < 1:
        parser.error("--per-class must be at least 1")
