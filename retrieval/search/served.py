"""One catalogue as the app serves it: the catalogue, its pretrained and
fine-tuned recommenders on one shared backbone, and its state, a small typed
value whose reason is public (no server path: search/public.py)."""

import time
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.data.catalogue import Catalogue
from retrieval.embedding.embedder import HeadRun, create_embedder, embedding_name, load_head
from retrieval.embedding.run_dir import read_metrics
from retrieval.errors import LookalikeError
from retrieval.models.backbones import Backbone
from retrieval.progress import Progress
from retrieval.search.answers import SIDES
from retrieval.search.public import public
from retrieval.search.recommender import Recommender
from retrieval.search.spaces import CatalogueConfig, finetune_command


@dataclass(frozen=True)
class CatalogueState:
    """building, ready, or unavailable with a reason that names no server path."""

    state: str
    reason: str = ""

    def __str__(self) -> str:  # the /catalogues API's "status"
        return f"{self.state}: {self.reason}" if self.reason else self.state


BUILDING, READY = CatalogueState("building"), CatalogueState("ready")


def unavailable(config: CatalogueConfig, error: Exception) -> CatalogueState:
    """Why a catalogue can't be served, fit to show anyone: its spec named by
    the catalogue's name, any other path by a placeholder."""
    reason = str(error) if isinstance(error, LookalikeError) else f"{type(error).__name__}: {error}"
    return CatalogueState("unavailable", public(reason.replace(config.spec, config.name)))


def no_head_note(config: CatalogueConfig, reason=None) -> str:
    """Why there is no fine-tuned side, and the command that makes one (with
    placeholders: the server's log has the real paths)."""
    why = f"Fine-tuned head unavailable ({public(str(reason).replace(config.spec, config.name))})." if reason \
        else "No fine-tuned head yet."
    return f"{why} Make one with `{finetune_command(config, public=True)}`"


@dataclass
class Served:
    """One catalogue served with one backbone. Opening loads the catalogue and
    the head (what the page needs); the backbone and the two recommenders
    come with `build`, once the page is up: it comes up before torchvision
    and timm are even imported."""

    config: CatalogueConfig
    backbone: str
    catalogue: Catalogue | None = None  # None: unavailable from the start
    head: HeadRun | None = None
    pretrained: Recommender | None = None
    finetuned: Recommender | None = None
    finetuned_note: str = ""    # why there is no fine-tuned side, and how to make one (public)
    state: CatalogueState = BUILDING
    build_started: float | None = None  # time.monotonic() when its build began
    progress: Progress = field(default_factory=Progress)

    @property
    def ready(self) -> bool:
        return self.state.state == "ready"

    @property
    def building(self) -> bool:
        return self.state.state == "building"

    @property
    def head_to_train(self) -> bool:
        """A head is configured in a RUN_DIR that does not exist yet."""
        head = self.config.head
        return self.head is None and bool(head) and not head.startswith("hub:") and not Path(head).exists()

    def build(self, backbone: Backbone, cache_dir, trainer=None):
        """Make both recommenders on the (shared) backbone; build or reuse the
        cached features and both indexes. `trainer(recommender, run_dir,
        progress)` makes a configured head that does not exist yet."""
        self.build_started = time.monotonic()
        self.pretrained = Recommender(self.catalogue, create_embedder(backbone), cache_dir).build(
            progress=self.progress)
        if trainer is not None and self.head_to_train:
            try:
                trainer(self.pretrained, self.config.head, self.progress)
                self.head, self.finetuned_note = load_head(self.config.head), ""
            except LookalikeError as e:
                self.finetuned_note = no_head_note(self.config, e)
        if self.head is not None:
            try:
                self.finetuned = Recommender(self.catalogue, create_embedder(backbone, self.head), cache_dir).build()
            except LookalikeError as e:
                self.head, self.finetuned_note = None, no_head_note(self.config, e)
        for rec in (self.pretrained, self.finetuned):
            if rec is not None:
                rec.embedder.backbone.warm_up()
        self.state = READY

    def embed_queries(self, images) -> list:
        """Validated query images -> per image {side: query embedding}, with
        one backbone pass per distinct backbone and views (a head with
        --unfreeze stages has its own backbone)."""
        features, out = {}, [{} for _ in images]
        for side in SIDES:
            rec = getattr(self, side)
            if rec is None:
                continue
            key = (id(rec.embedder.backbone), rec.embedder.views)
            if key not in features:
                features[key] = rec.embedder.features(images)
            for query, embedding in zip(out, rec.embedder.embed_features(features[key])):
                query[side] = embedding
        return out

    def status_record(self) -> dict:
        """JSON-friendly status, for the UI and the /catalogues endpoint."""
        started = self.building and self.build_started is not None
        return {"catalogue": self.config.name, "backbone": self.backbone, "status": str(self.state),
                "building_seconds": round(time.monotonic() - self.build_started) if started else None,
                "progress": self.progress.snapshot() if started else None,
                "items": len(self.catalogue) if self.catalogue else None,
                "pretrained": self.backbone if self.catalogue else None,
                "finetuned": embedding_name(self.backbone, self.head) if self.head else None,
                "finetuned_note": self.finetuned_note}

    def validation(self) -> dict | None:
        """The fine-tuning run's metrics.json and curves.png, when there are any."""
        return None if self.head is None else read_metrics(self.head.run_dir)

