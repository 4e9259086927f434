"""Fine-tuned embedding heads: the module the fine-tuner trains, and loading a
trained one back from a RUN_DIR or the Hub (`hub:OWNER/NAME`).

A head maps one backbone feature vector to an embedding; the engine applies it
to the image and its mirror and averages, as it does for pretrained features.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbones import create_backbone
from .errors import LookalikeError
from .fingerprint import digest
from .index import l2_normalise
from .stages import StagedTail

WEIGHTS_FILE, CONFIG_FILE = "head.safetensors", "config.json"


def embed_views(views: np.ndarray, head=None) -> np.ndarray:
    """Backbone views (N, 2, dim) -> (head, per view) -> one L2-normalised
    embedding per image: the mean of its two normalised views. The one place
    embeddings are made, for the index, queries and the fine-tuner alike."""
    views = np.asarray(views, dtype=np.float32)
    if head is not None:
        n, v, d = views.shape
        views = np.asarray(head(views.reshape(n * v, d)), dtype=np.float32).reshape(n, v, -1)
    return l2_normalise(l2_normalise(views).sum(axis=1))


class EmbeddingHead(nn.Module):
    """L2-normalised features -> concat[learned projection, fixed whitening],
    each part L2-normalised. Either part may be absent (dim 0).

    The concatenation is what the research measured to help on unseen classes:
    a trained head alone scores below plain whitening, the pair above both
    (docs/finetune-research.md).
    """

    def __init__(self, in_dim: int, projection_dim: int = 512, whitening_dim: int = 512,
                 tail: StagedTail | None = None):
        super().__init__()
        if projection_dim <= 0 and whitening_dim <= 0:
            raise LookalikeError("a head needs a projection or a whitening part (both dims are 0)")
        # the backbone's last stages when `--unfreeze` trained them; the backbone
        # runs them (Backbone.with_tail), so forward() starts from pooled features
        self.tail = tail
        self.projection = nn.Linear(in_dim, projection_dim) if projection_dim > 0 else None
        self.register_buffer("whitening_mean", torch.zeros(in_dim if whitening_dim > 0 else 0))
        self.register_buffer("whitening", torch.zeros(max(whitening_dim, 0), in_dim))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The trainable part alone (what the metric-learning loss sees)."""
        return F.normalize(self.projection(F.normalize(features, dim=-1)), dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.normalize(features, dim=-1)
        parts = []
        if self.projection is not None:
            parts.append(F.normalize(self.projection(x), dim=-1))
        if len(self.whitening):
            parts.append(F.normalize((x - self.whitening_mean) @ self.whitening.T, dim=-1))
        return torch.cat(parts, dim=-1)


class Head:
    """A trained head as the engine uses it: numpy in, numpy out, plus the
    name and fingerprint that key its cached index."""

    def __init__(self, module: EmbeddingHead, config: dict, run_dir: Path, fingerprint: str):
        self.module, self.config, self.run_dir, self.fingerprint = module.eval(), config, run_dir, fingerprint
        self.name = config.get("name") or run_dir.name

    @property
    def backbone(self) -> str:
        return self.config["backbone"]

    @property
    def tail(self) -> StagedTail | None:
        return self.module.tail

    @torch.inference_mode()
    def __call__(self, features: np.ndarray) -> np.ndarray:
        return self.module(torch.as_tensor(np.asarray(features, dtype=np.float32))).numpy()


def build_head(config: dict) -> EmbeddingHead:
    """An untrained head of the shape `config` (a RUN_DIR's config.json) describes."""
    tail = None
    if config.get("unfreeze"):  # the architecture only: the weights come from the run
        tail = create_backbone(config["backbone"], device="cpu", random_weights=True).model.tail(
            config["tail_start"])
    return EmbeddingHead(config["in_dim"], config["projection_dim"], config["whitening_dim"], tail)


def load_head(spec) -> Head:
    """Load a head from a RUN_DIR or `hub:OWNER/NAME` (downloaded through
    huggingface_hub; offline it must already be in the Hub cache)."""
    spec = str(spec)
    run_dir = _download(spec[4:]) if spec.startswith("hub:") else Path(spec)
    weights, config_file = run_dir / WEIGHTS_FILE, run_dir / CONFIG_FILE
    if not weights.is_file() or not config_file.is_file():
        raise LookalikeError(f"{spec}: not a fine-tuning run (needs {WEIGHTS_FILE} and {CONFIG_FILE}); "
                             f"make one with `python -m finetune --catalogue SPEC --output {spec}`")
    from safetensors.torch import load_file

    config = json.loads(config_file.read_text())
    module = build_head(config)
    try:
        module.load_state_dict(load_file(weights), strict=True)
    except (RuntimeError, OSError) as e:
        raise LookalikeError(f"{spec}: {WEIGHTS_FILE} does not match its {CONFIG_FILE} ({e})") from e
    weights_hash = hashlib.sha256(weights.read_bytes()).hexdigest()
    return Head(module, config, run_dir, digest("head", weights_hash, config))


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="model"))
    except Exception as e:  # offline, private, missing: one clear message
        raise LookalikeError(f"hub:{repo_id}: head could not be fetched from the Hugging Face Hub "
                             f"({type(e).__name__}: {e})") from e
