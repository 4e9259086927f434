"""What the app serves, without any UI: several catalogues, each as a pair of
Recommenders (pretrained and fine-tuned embedding) sharing one Backbone and one
Catalogue, so a query costs one backbone pass; plus the deploy manifest
(spaces.yaml) that lists them. A catalogue that can't be served is kept with
its reason instead of stopping the others."""

import base64
import io
import json
import logging
import os
import shlex
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml
from PIL import Image as PILImage

from .backbones import Backbone, create_backbone, resolve_backbone
from .catalogues import Catalogue, load_catalogue
from .engine import Recommender, embedding_name, head_mismatch
from .errors import LookalikeError
from .heads import Head, load_head
from .images import open_image

log = logging.getLogger(__name__)

MAX_K = 50
THUMBNAIL = 256  # longest side of result images sent as data URLs
MAX_THUMBNAIL_BYTES = 100_000  # a small image file larger than this is re-encoded
SIDES = ("pretrained", "finetuned")


@dataclass(frozen=True)
class CatalogueConfig:
    """One catalogue to serve, as a manifest entry or a --catalogue flag gives it."""

    name: str
    spec: str
    backbone: str = "auto"
    head: str | None = None   # RUN_DIR or hub:REPO_ID of a fine-tuned head
    per_class: int | None = None
    classes: str | None = None


def on_space() -> bool:
    """Hugging Face Spaces set SPACE_ID; elsewhere this project runs offline."""
    return bool(os.environ.get("SPACE_ID"))


def load_manifest(path, space: bool | None = None) -> list:
    """The CatalogueConfigs that spaces.yaml lists for a Space or for a local run.

    Each catalogue entry has shared keys plus a `space:` and/or a `local:` block
    that overrides them; an entry without the block for this place is not served
    there. Relative paths (spec folders, RUN_DIRs) are relative to the manifest.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise LookalikeError(f"manifest {path}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("catalogues", []), list):
        raise LookalikeError(f"manifest {path}: expected a mapping with a `catalogues` list")
    place = "space" if (on_space() if space is None else space) else "local"
    keys = {f.name for f in fields(CatalogueConfig)}
    configs = []
    for item in data.get("catalogues", []):
        if not isinstance(item, dict) or not isinstance(item.get(place, {}), dict):
            raise LookalikeError(f"manifest {path}: catalogue entry {item!r} is not a mapping")
        if place not in item:
            continue
        merged = {k: v for k, v in item.items() if k not in ("space", "local")} | item[place]
        if set(merged) - keys or not {"name", "spec"} <= set(merged):
            raise LookalikeError(f"manifest {path}: catalogue entry {item!r} needs name and spec "
                                 f"and knows only {sorted(keys)}")
        if not isinstance(merged.get("per_class", 1), int):
            raise LookalikeError(f"manifest {path}: per_class of {merged['name']!r} must be a whole number")
        merged["spec"] = _beside(path.parent, str(merged["spec"]), must_exist=True)
        if merged.get("head"):
            merged["head"] = _beside(path.parent, str(merged["head"]), must_exist=False)
        configs.append(CatalogueConfig(**merged))
    return configs


def _beside(root: Path, value: str, must_exist: bool) -> str:
    """A relative path in the manifest, made relative to the working directory."""
    if value.startswith("hub:") or os.path.isabs(value) or (must_exist and not (root / value).exists()):
        return value
    return os.path.relpath(root / value)


def finetune_command(config: CatalogueConfig) -> str:
    """How to make the missing fine-tuned head of a catalogue (into its
    configured RUN_DIR, so the next start picks it up)."""
    options = [("--catalogue", config.spec), ("--classes", config.classes), ("--per-class", config.per_class),
               ("--backbone", None if config.backbone == "auto" else config.backbone)]
    flags = " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in options if value is not None)
    output = config.head if config.head and not config.head.startswith("hub:") else f"runs/{config.name}"
    return f"python -m finetune {flags} --output {shlex.quote(output)}"


@dataclass
class Served:
    """One catalogue served with one backbone. Opening loads the catalogue and
    the head (what the page needs); the backbone and the pair of recommenders
    come with `build`, once the page is up: it comes up before torchvision
    and timm are even imported."""

    config: CatalogueConfig
    backbone: str
    catalogue: Catalogue | None = None  # None: unavailable from the start
    head: Head | None = None
    pretrained: Recommender | None = None
    finetuned: Recommender | None = None
    finetuned_note: str = ""    # why there is no fine-tuned side, and how to make one
    status: str = "building"    # building | ready | unavailable: reason
    build_started: float | None = None  # time.monotonic() when its build began

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def build(self, backbone: Backbone, cache_dir):
        """Make both recommenders on the (shared) backbone; build or reuse the
        cached features and both indexes."""
        self.build_started = time.monotonic()
        self.pretrained = Recommender.open(self.catalogue, backbone=backbone, cache_dir=cache_dir).build()
        if self.head is not None:
            try:
                self.finetuned = Recommender.open(self.catalogue, backbone=backbone, head=self.head,
                                                  cache_dir=cache_dir).build()
            except LookalikeError as e:
                self.head, self.finetuned_note = None, _no_head(self.config, e)
        self.status = "ready"

    def describe(self) -> dict:
        """JSON-friendly status, for the UI and the /catalogues endpoint."""
        return {"catalogue": self.config.name, "backbone": self.backbone, "spec": self.config.spec,
                "status": self.status,
                "building_seconds": round(time.monotonic() - self.build_started)
                if self.status == "building" and self.build_started else None,
                "items": len(self.catalogue) if self.catalogue else None,
                "pretrained": self.backbone if self.catalogue else None,
                "finetuned": embedding_name(self.backbone, self.head) if self.head else None,
                "finetuned_note": self.finetuned_note}

    def validation(self) -> dict | None:
        """The fine-tuning run's metrics.json and curves.png, when there are any."""
        if self.head is None:
            return None
        run_dir = Path(self.head.run_dir)
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            return {"error": f"{run_dir / 'metrics.json'}: {e}"}
        curves = run_dir / "curves.png"
        return {"metrics": metrics, "curves": str(curves) if curves.is_file() else None}


def _no_head(config: CatalogueConfig, reason=None) -> str:
    why = f"Fine-tuned head unavailable ({reason})." if reason else "No fine-tuned head yet."
    return f"{why} Make one with `{finetune_command(config)}`"


@dataclass
class Answer:
    """Both sides' results for one query; `query_label` is set when the query
    is a catalogue item, so results sharing its class can be marked."""

    served: Served
    k: int
    query_id: str | None
    query_label: str | None
    results: dict = field(default_factory=dict)  # side -> list[Result]

    def hits(self, side: str) -> int | None:
        if self.query_label is None or side not in self.results:
            return None
        return sum(r.label == self.query_label for r in self.results[side])


class Service:
    """Opens every configured catalogue, builds its indexes and answers queries."""

    def __init__(self, configs, cache_dir=None, device="auto", backbones=None):
        self.cache_dir, self.device = cache_dir, device
        self._backbones = dict(backbones or {})  # name -> Backbone, shared by every catalogue
        self._catalogues = {}                    # (spec, classes, per_class) -> Catalogue
        self.served: list = []
        self._thumbnails = {}  # (catalogue fingerprint, row) -> data URL: encoded once, not per query
        for config in configs:
            self.served.append(self._open(config))
        if not any(s.catalogue for s in self.served):
            reasons = "; ".join(f"{s.config.name}: {s.status}" for s in self.served) or "none configured"
            raise LookalikeError(f"no catalogue could be loaded ({reasons})")

    def _open(self, config: CatalogueConfig) -> Served:
        head, head_note = None, _no_head(config)
        if config.head:
            try:
                head, head_note = load_head(config.head), ""
            except LookalikeError as e:
                head_note = _no_head(config, e)
        name = config.backbone
        try:
            # like Recommender.open: "auto" means the head's own backbone when there is a head
            name = head.backbone if head is not None and name == "auto" else resolve_backbone(name)[0]
            if any(s.config.name == config.name and s.backbone == name for s in self.served):
                raise LookalikeError(f"catalogue {config.name!r} is listed twice with backbone {name}")
            key = (config.spec, config.classes, config.per_class)
            if key not in self._catalogues:
                self._catalogues[key] = load_catalogue(config.spec, config.classes, per_class=config.per_class)
        except LookalikeError as e:
            log.warning("catalogue %s unavailable: %s", config.name, e)
            return Served(config, name, status=f"unavailable: {e}")
        if head is not None and head.backbone != name:
            head, head_note = None, _no_head(config, LookalikeError(head_mismatch(head, name)))
        return Served(config, name, self._catalogues[key], head, finetuned_note=head_note)

    def _backbone(self, name: str) -> Backbone:
        """One Backbone per name, shared by every catalogue (made on first use)."""
        if name not in self._backbones:
            self._backbones[name] = create_backbone(name, device=self.device)
        return self._backbones[name]

    def build_all(self):
        """Build every catalogue's indexes (at start-up, once the page is up);
        one that fails becomes unavailable with its reason."""
        for served in self.served:
            if served.status != "building":
                continue
            log.info("catalogue %s (%s): building or reusing features and indexes", served.config.name,
                     served.backbone)
            try:
                served.build(self._backbone(served.backbone), self.cache_dir)
            except Exception as e:  # a server thread: keep serving the others, say why
                log.exception("catalogue %s failed to build", served.config.name)
                served.status = f"unavailable: {type(e).__name__}: {e}"
            else:
                log.info("catalogue %s (%s): ready, %d items indexed in %.1f s", served.config.name,
                         served.backbone, len(served.pretrained.rows), time.monotonic() - served.build_started)

    @property
    def building(self) -> bool:
        return any(s.status == "building" for s in self.served)

    def names(self) -> list:
        return list(dict.fromkeys(s.config.name for s in self.served))

    def backbones(self, catalogue: str) -> list:
        return [s.backbone for s in self.served if s.config.name == catalogue]

    def get(self, catalogue: str, backbone: str | None = None) -> Served:
        """The served pair for a catalogue name (and backbone; default its first)."""
        matches = [s for s in self.served if s.config.name == catalogue
                   and (not backbone or s.backbone == backbone)]
        if not matches:
            raise LookalikeError(f"unknown catalogue {catalogue!r}"
                                 + (f" with backbone {backbone!r}" if backbone else "")
                                 + f"; served: {', '.join(self.names())}")
        return matches[0]

    def examples(self, catalogue: str, n=8) -> list:
        """Rows of n catalogue items from classes spread over the catalogue."""
        served = self.get(catalogue)
        if served.catalogue is None:
            return []
        first = {}
        for row, label in enumerate(served.catalogue.labels):
            first.setdefault(label, row)
        rows = list(first.values())
        step = max(1, len(rows) // n)
        return rows[::step][:n]

    def answer(self, image, catalogue: str, k: int, backbone=None, query_row=None) -> Answer:
        """Search both embeddings with one backbone pass. `image` is a path,
        bytes or PIL image (validated); or `query_row` names a catalogue item."""
        served = self.get(catalogue, backbone)
        if not served.ready:
            raise LookalikeError(f"catalogue {catalogue!r} is not ready ({served.status})")
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k != int(k) or not 1 <= k <= MAX_K:
            raise LookalikeError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}")
        cat = served.catalogue
        query_id = query_label = None
        if query_row is not None:
            image = cat.image(query_row)
            query_id, query_label = cat.ids[query_row], cat.label_names[cat.labels[query_row]]
        elif image is None:
            raise LookalikeError("no query image: upload, paste or snap one, or click an example")
        image = open_image(image)  # validated once, for both sides
        answer = Answer(served, int(k), query_id, query_label)
        features = {}  # one backbone pass per distinct backbone (a head with --unfreeze stages has its own)
        for side in SIDES:
            rec = getattr(served, side)
            if rec is not None:
                if id(rec.backbone) not in features:
                    features[id(rec.backbone)] = rec.query_features(image)
                answer.results[side] = rec.search_features(features[id(rec.backbone)], int(k))
        return answer

    def recommend(self, image, catalogue: str, k: int = 10, backbone=None, query_row=None) -> dict:
        """JSON-friendly results of both embeddings, each with its image as a
        data URL (what the /recommend API endpoint returns)."""
        answer = self.answer(image, catalogue, k, backbone, query_row)
        served = answer.served
        out = {"catalogue": served.config.name, "backbone": served.backbone, "k": answer.k,
               "query": {"id": answer.query_id, "label": answer.query_label} if answer.query_id else None}
        for side in SIDES:
            rec = getattr(served, side)
            results = answer.results.get(side, [])
            out[side] = {
                "embedding": rec.embedding_name if rec else None,
                "results": [dict(r.to_dict(), image=self.thumbnail(served.catalogue, r.row),
                                 same_class=None if answer.query_label is None else r.label == answer.query_label)
                            for r in results],
                "same_class": answer.hits(side),
                "note": None if rec else served.finetuned_note,
            }
        return out

    def thumbnail(self, catalogue, row: int) -> str:
        """A catalogue item's image as a small data URL, made once (at most one
        per catalogue item is kept)."""
        key = (catalogue.fingerprint, row)
        if key not in self._thumbnails:
            self._thumbnails[key] = data_url(catalogue, row)
        return self._thumbnails[key]

    def status(self) -> list:
        return [s.describe() for s in self.served]


def data_url(catalogue, row: int) -> str:
    """A catalogue item as a data URL (self-contained JSON for API clients): its
    own file when that is already a small JPEG or PNG (no decode, no re-encode:
    0.3 ms instead of 0.8-1.0 ms per image here), else a thumbnail: PNG when
    the image was small already (28x28 garments stay sharp), else JPEG."""
    raw = catalogue.raw_images[row]["image"]
    data = raw["bytes"] or Path(raw["path"]).read_bytes()
    try:
        with PILImage.open(io.BytesIO(data)) as header:  # reads the header only
            small = header.format in ("JPEG", "PNG") and max(header.size) <= THUMBNAIL
            kind = header.format.lower()
    except (OSError, ValueError):
        small = False
    if small and len(data) <= MAX_THUMBNAIL_BYTES:
        return f"data:image/{kind};base64," + base64.b64encode(data).decode()
    image = catalogue.image(row)  # validated decode
    kind = "png" if max(image.size) <= THUMBNAIL else "jpeg"
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buf = io.BytesIO()
    image.save(buf, format=kind, **({"quality": 90} if kind == "jpeg" else {}))
    return f"data:image/{kind};base64," + base64.b64encode(buf.getvalue()).decode()
