"""The Embedder: backbone + its preprocessing + the test-time views + an
optional fine-tuned head, as one object that turns images into embeddings.

`create_embedder` is the one factory: the engine, the app's service, the
fine-tuner and head loading all compose embedders through it, with one rule
for "auto" backbones and one compatibility check. A run folder (RUN_DIR) is
read by `load_head` and written by `Embedder.save_pretrained`, and nothing
else touches its `config.json` or weights: its format is versioned.
"""

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from . import views as view_ops
from .artefacts import check, record
from .atomic import write_json
from .backbones import Backbone, backbone_spec, create_backbone
from .errors import LookalikeError
from .fingerprint import digest
from .heads import EmbeddingHead

FORMAT_VERSION = 2
CONFIG_FILE, WEIGHTS_FILE = "config.json", "head.safetensors"


@dataclass
class Head:
    """A fine-tuned head loaded from a run, before any backbone exists (the
    app's page comes up with heads loaded and backbones still to make)."""

    module: EmbeddingHead
    config: dict               # the run's config.json, current format
    run_dir: Path
    fingerprint: str

    @property
    def name(self) -> str:
        return self.config.get("name") or self.run_dir.name

    @property
    def backbone(self) -> str:
        return self.config["embedder"]["backbone"]["backbone"]

    @property
    def views(self) -> tuple:
        return tuple(self.config["embedder"]["views"])

    def mismatch(self, backbone: Backbone) -> str | None:
        """Why this head can't embed `backbone`'s features, or None."""
        trained = self.config["embedder"]["backbone"]
        if trained == backbone.describe():
            return None
        differ = sorted(k for k in trained.keys() | backbone.describe().keys()
                        if trained.get(k) != backbone.describe().get(k))
        return (f"head {self.name} was trained on {trained['backbone']} features ({trained['weights']}), "
                f"not {backbone.name} ({backbone.weights}; differs in {', '.join(differ)}); "
                f"use --backbone {trained['backbone']} (or auto)")

    @torch.inference_mode()
    def __call__(self, features: np.ndarray) -> np.ndarray:
        return self.module(torch.as_tensor(np.asarray(features, dtype=np.float32))).numpy()


@dataclass
class Embedder:
    """Images -> L2-normalised embeddings: each image's views run through the
    backbone (backbone features (N, V, D), what caches and the fine-tuner keep),
    then through the head per view, normalised and averaged."""

    backbone: Backbone
    views: tuple = view_ops.DEFAULT_VIEWS
    head: Head | None = None

    @property
    def name(self) -> str:
        return embedding_name(self.backbone.name, self.head)

    @cached_property
    def features_fingerprint(self) -> str:
        """Names the backbone features: backbone (weights, fine-tuned stages,
        preprocessing, pooling, quirks) and views."""
        return digest("features", self.backbone.fingerprint, list(self.views))

    @cached_property
    def fingerprint(self) -> str:
        return digest("embedder", self.features_fingerprint, self.head.fingerprint if self.head else None)

    def preprocess(self, image) -> torch.Tensor:
        return self.backbone.preprocess(image)

    def backbone_features(self, batch: torch.Tensor) -> np.ndarray:
        """Preprocessed images (N, 3, H, W) -> features of their views (N, V, D)."""
        return view_ops.split(self.backbone(view_ops.expand(batch, self.views)), self.views).numpy()

    def features(self, images) -> np.ndarray:
        """Validated PIL images -> (N, V, D) backbone features."""
        return self.backbone_features(torch.stack([self.preprocess(im) for im in images]))

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """Backbone features (N, V, D) -> one embedding per image: the mean of
        its views' (head's) normalised embeddings, normalised. The one place
        embeddings are made, for indexes, queries and evaluation alike."""
        features = np.asarray(features, dtype=np.float32)
        if self.head is not None:
            n, v, d = features.shape
            features = self.head(features.reshape(n * v, d)).reshape(n, v, -1)
        return view_ops.pool(features)

    def embed(self, images) -> np.ndarray:
        return self.embed_features(self.features(images))

    def save_pretrained(self, folder, training: dict | None = None):
        """Write the head's weights and config.json (with what it was trained
        on, `training`) into `folder`; `from_pretrained` loads them back."""
        from safetensors.torch import save_file

        if self.head is None:
            raise LookalikeError("an embedder without a fine-tuned head has nothing to save")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.head.module.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))
        write_json(folder / CONFIG_FILE, {
            "format_version": FORMAT_VERSION, "name": self.head.name,
            "embedder": {"backbone": self.head.config["embedder"]["backbone"], "views": list(self.views),
                         "head": self.head.module.architecture()},
            "training": training or {}, "files": record(folder, [WEIGHTS_FILE])})

    @classmethod
    def from_pretrained(cls, spec, backbone="auto", device="auto") -> "Embedder":
        """An embedder from a RUN_DIR or hub:OWNER/NAME (its own backbone by default)."""
        return create_embedder(backbone, load_head(spec), device)


def embedding_name(backbone: str, head: Head | None) -> str:
    """What results are labelled with: the backbone, plus the head if any
    (also before the backbone is built, for the app's status)."""
    return f"{backbone} + {head.name}" if head else backbone


def create_embedder(backbone="auto", head=None, device="auto", runtime=None, cache_dir=None) -> Embedder:
    """The one factory. `backbone`: a name ('auto' means the head's own
    backbone when there is a head) or an already-built Backbone to share;
    `head`: None, a RUN_DIR or hub:OWNER/NAME, or a loaded Head; `runtime`:
    what runs the backbone's inference (runtimes.py); `cache_dir`: the cache
    root of a backbone built here."""
    if isinstance(head, (str, Path)):
        head = load_head(head)
    if isinstance(backbone, str):
        backbone = create_backbone(head.backbone if head is not None and backbone == "auto" else backbone,
                                   device=device, runtime=runtime, cache_dir=cache_dir)
    if head is None:
        return Embedder(backbone)
    why = head.mismatch(backbone)
    if why:
        raise LookalikeError(why)
    if head.module.tail is not None:  # fine-tuned last stages: the backbone runs them
        backbone = backbone.with_tail(head.module.tail, f"tail:{head.fingerprint}")
    return Embedder(backbone, head.views, head)


def trained_head(module: EmbeddingHead, backbone: Backbone, name: str, views=view_ops.DEFAULT_VIEWS) -> Head:
    """A freshly trained head as a Head (the fine-tuner's, before it is saved)."""
    config = {"format_version": FORMAT_VERSION, "name": name,
              "embedder": {"backbone": backbone.describe(), "views": list(view_ops.check_views(views)),
                           "head": module.architecture()}}
    return Head(module.eval(), config, Path(name), digest("head", _state_digest(module), config["embedder"]))


def load_head(spec) -> Head:
    """Load a head from a RUN_DIR or `hub:OWNER/NAME` (downloaded through
    huggingface_hub; offline it must already be in the Hub cache)."""
    from safetensors.torch import load_file

    spec = str(spec)
    run_dir = _download(spec[4:]) if spec.startswith("hub:") else Path(spec)
    weights, config_file = run_dir / WEIGHTS_FILE, run_dir / CONFIG_FILE
    if not weights.is_file() or not config_file.is_file():
        raise LookalikeError(f"{spec}: not a fine-tuning run (needs {WEIGHTS_FILE} and {CONFIG_FILE}); "
                             f"make one with `python -m finetune --catalogue SPEC --output {spec}`")
    config = read_config(config_file)
    if config.get("files") is not None:  # runs of format 1 recorded no checksums
        check(run_dir, config["files"], deep=True)  # a head is small: always hashed
    module = _build_head(config["embedder"], spec)
    try:
        module.load_state_dict(load_file(weights), strict=True)
    except Exception as e:  # wrong shapes, damaged file: safetensors raises several types
        raise LookalikeError(f"{spec}: {WEIGHTS_FILE} does not match its {CONFIG_FILE} or is damaged "
                             f"({type(e).__name__}: {e})") from e
    return Head(module.eval(), config, run_dir, digest("head", _state_digest(module), config["embedder"]))


def read_config(path: Path) -> dict:
    """A run's config.json in the current format (format 1, written before
    formats were numbered, is upgraded), or one clear error."""
    try:
        config = json.loads(Path(path).read_text())
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        version = config.get("format_version", 1)
        if version == 1:
            config = _upgrade_format_1(config)
        elif version != FORMAT_VERSION:
            raise LookalikeError(f"{path}: written in config format {version}, this Lookalike reads "
                                 f"{FORMAT_VERSION}; upgrade Lookalike or retrain the head")
        else:
            config["files"]  # a run of this format records its weights' checksum
        embedder = config["embedder"]
        view_ops.check_views(embedder["views"])
        for key in ("in_dim", "projection_dim", "whitening_dim", "tail_start"):
            embedder["head"][key]
        embedder["backbone"]["backbone"], embedder["backbone"]["weights"]
    except LookalikeError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise LookalikeError(f"{path}: not a valid run config ({type(e).__name__}: {e}); "
                             "retrain the head with `python -m finetune`") from e
    return config


def _upgrade_format_1(config: dict) -> dict:
    """Format 1 kept everything flat and described the preprocessing as text.
    It upgrades when that text is what this version's registry would have
    written then (same size, interpolation, normalisation, pooling, views)."""
    spec = backbone_spec(config["backbone"])
    p = spec.preprocessing
    pooling = config["preprocessing"].split("/")[3]
    then = (f"resize-whole-{p.size[0]}x{p.size[1]}-{p.interpolation}/mean{tuple(p.mean)}/std{tuple(p.std)}/"
            f"{pooling}/views-orig-mirror")
    if config["preprocessing"] != then or spec.quirks or p.resize != "whole":
        raise LookalikeError(f"run {config.get('name')!r} was written by an older Lookalike with preprocessing "
                             f"{config['preprocessing']!r}, which this version no longer makes; retrain it")
    head = {k: config[k] for k in ("in_dim", "projection_dim", "whitening_dim")}
    head["tail_start"] = config.get("tail_start") if config.get("unfreeze") else None
    moved = {"backbone", "weights", "preprocessing", "in_dim", "projection_dim", "whitening_dim", "tail_start",
             "name"}
    return {"format_version": FORMAT_VERSION, "name": config.get("name"),
            "embedder": {"backbone": {"backbone": spec.name, "weights": config["weights"], "pooling": pooling,
                                      "preprocessing": p.describe(), "quirks": spec.quirks},
                         "views": list(view_ops.DEFAULT_VIEWS), "head": head},
            "training": {k: v for k, v in config.items() if k not in moved}, "files": None}


def _build_head(embedder: dict, spec: str) -> EmbeddingHead:
    """An untrained head of the recorded architecture (the weights come next)."""
    arch = embedder["head"]
    tail = None
    if arch["tail_start"] is not None:  # architecture only: the trained stages come with the weights
        model = create_backbone(embedder["backbone"]["backbone"], device="cpu", pretrained=False).model
        tail = model.tail(arch["tail_start"])
    try:
        return EmbeddingHead(arch["in_dim"], arch["projection_dim"], arch["whitening_dim"], tail)
    except (TypeError, ValueError, RuntimeError) as e:
        raise LookalikeError(f"{spec}: head architecture {arch} is not valid ({e})") from e


def _state_digest(module: EmbeddingHead) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="model"))
    except Exception as e:  # offline, private, missing: one clear message
        raise LookalikeError(f"hub:{repo_id}: head could not be fetched from the Hugging Face Hub "
                             f"({type(e).__name__}: {e})") from e
