"""The Embedder: backbone + its preprocessing + the test-time views + an
optional fine-tuned head, as one object that turns images into embeddings.

`create_embedder` is the one factory: the engine, the app's service, the
fine-tuner and head loading all compose embedders through it, with one rule
for "auto" backbones and one compatibility check. Heads are read from and
written to run folders through run_dir.py, the owner of that format (as a
sentence-transformers model saves and loads its own config).
"""

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from retrieval.embedding import run_dir
from retrieval.embedding.run_dir import EmbedderConfig, RunConfig
from retrieval.errors import LookalikeError
from retrieval.models import views as view_ops
from retrieval.models.backbones import Backbone, create_backbone
from retrieval.models.heads import EmbeddingHead
from retrieval.store.fingerprint import digest


@dataclass
class HeadRun:
    """A fine-tuned head loaded from a run, before any backbone exists (the
    app's page comes up with heads loaded and backbones still to make)."""

    module: EmbeddingHead
    config: RunConfig
    run_dir: Path
    fingerprint: str

    @property
    def name(self) -> str:
        return self.config.name or self.run_dir.name

    @property
    def backbone(self) -> str:
        return self.config.embedder.backbone["backbone"]

    @property
    def views(self) -> tuple:
        return self.config.embedder.views

    def mismatch(self, backbone: Backbone) -> str | None:
        """Why this head can't embed `backbone`'s features, or None."""
        trained = self.config.embedder.backbone
        if trained == backbone.config():
            return None
        differ = sorted(k for k in trained.keys() | backbone.config().keys()
                        if trained.get(k) != backbone.config().get(k))
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
    head: HeadRun | None = None

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
        on, `training`) as the run `folder`, atomically, as `finetune` writes
        runs (a folder Lookalike did not write is refused, never replaced);
        `from_pretrained` loads them back."""
        if self.head is None:
            raise LookalikeError("an embedder without a fine-tuned head has nothing to save")
        config = self.head.config
        run_dir.save_run(folder, run_dir.head_config(self.head.name, config.embedder.backbone, self.views,
                                                     self.head.module.architecture(), training),
                         self.head.module.state_dict(), {})

    @classmethod
    def from_pretrained(cls, spec, backbone="auto", device="auto") -> "Embedder":
        """An embedder from a RUN_DIR or hub:OWNER/NAME (its own backbone by default)."""
        return create_embedder(backbone, load_head(spec), device)


def embedding_name(backbone: str, head: HeadRun | None) -> str:
    """What results are labelled with: the backbone, plus the head if any
    (also before the backbone is built, for the app's status)."""
    return f"{backbone} + {head.name}" if head else backbone


def create_embedder(backbone="auto", head=None, device="auto", runtime=None, cache_dir=None) -> Embedder:
    """The one factory. `backbone`: a name ('auto' means the head's own
    backbone when there is a head) or an already-built Backbone to share;
    `head`: None, a RUN_DIR or hub:OWNER/NAME, or a loaded HeadRun; `runtime`:
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


def trained_head(module: EmbeddingHead, backbone: Backbone, name: str, views=view_ops.DEFAULT_VIEWS) -> HeadRun:
    """A freshly trained head as a HeadRun (the fine-tuner's, before it is saved)."""
    config = run_dir.head_config(name, backbone.config(), views, module.architecture())
    return HeadRun(module.eval(), config, Path(name), _fingerprint(module, config))


def load_head(spec) -> HeadRun:
    """Load a head from a RUN_DIR or `hub:OWNER/NAME` (downloaded through
    huggingface_hub; offline it must already be in the Hub cache)."""
    spec = str(spec)
    folder = _download(spec[4:]) if spec.startswith("hub:") else Path(spec)
    config = run_dir.read_run(folder, "head")
    module = _build_head(config.embedder, spec)
    run_dir.load_weights(folder, config, module, spec)
    return HeadRun(module.eval(), config, folder, _fingerprint(module, config))


def _fingerprint(module: EmbeddingHead, config: RunConfig) -> str:
    return digest("head", _state_digest(module), config.to_json()["embedder"])


def _build_head(embedder: EmbedderConfig, spec: str) -> EmbeddingHead:
    """An untrained head of the recorded architecture (the weights come next)."""
    arch = embedder.head
    tail = None
    if arch.tail_start is not None:  # architecture only: the trained stages come with the weights
        model = create_backbone(embedder.backbone["backbone"], device="cpu", pretrained=False).model
        tail = model.tail(arch.tail_start)
    try:
        return EmbeddingHead(arch.in_dim, arch.projection_dim, arch.whitening_dim, tail)
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
