"""What the app serves, without any UI: several catalogues, each with a
pretrained and a fine-tuned Recommender sharing one Backbone and one
Catalogue, so a query costs one backbone pass. A catalogue that can't be
served is kept with its reason instead of stopping the others. Answers are
render-ready (answers.py): the page and the API show the same records."""

import io
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage

from retrieval.data.catalogues import load_catalogue
from retrieval.data.images import open_image
from retrieval.embedding.embedder import load_head
from retrieval.errors import LookalikeError
from retrieval.models.backbones import Backbone, create_backbone, resolve_backbone
from retrieval.search.answers import SIDES, Answer, Match, QueryItem, Side
from retrieval.search.batching import QueryBatcher
from retrieval.search.duplicates import duplicate_groups
from retrieval.search.explain import explain_pair
from retrieval.search.fields import field_summary
from retrieval.search.limits import shown
from retrieval.search.query import Query
from retrieval.search.served import Served, no_head_note, unavailable
from retrieval.search.spaces import CatalogueConfig
from retrieval.search.thumbnails import Thumbnails
from retrieval.search.uploads import UploadEmbeddings
from retrieval.store.cache import cache_root

log = logging.getLogger(__name__)


@dataclass
class Example:
    """A catalogue item offered as a query."""

    row: int
    label: str
    thumbnail: Path


class Service:
    """Opens every configured catalogue, builds its indexes and answers queries."""

    def __init__(self, configs, cache_dir=None, device="auto", backbones=None, trainer=None):
        """`trainer` (see Served.build) makes missing heads during the build."""
        self.cache_dir, self.device, self.trainer = cache_dir, device, trainer
        self.thumbnails = Thumbnails(cache_root(cache_dir) / "thumbnails")
        self._backbones = dict(backbones or {})  # name -> Backbone, shared by every catalogue
        self._catalogues = {}                    # (spec, classes, per_class) -> Catalogue
        self._batchers, self._batchers_lock = {}, threading.Lock()  # one per served catalogue
        self._views = {}  # what the page shows of a catalogue, made once (its duplicate groups)
        self._uploads = UploadEmbeddings()
        self.served: list = []
        for config in configs:
            self.served.append(self._open(config))
        if not any(s.catalogue for s in self.served):
            reasons = "; ".join(f"{s.config.name}: {s.state}" for s in self.served) or "none configured"
            raise LookalikeError(f"no catalogue could be loaded ({reasons})")

    def _open(self, config: CatalogueConfig) -> Served:
        head, head_note = None, no_head_note(config)
        if config.head:
            try:
                head, head_note = load_head(config.head), ""
            except LookalikeError as e:
                head_note = no_head_note(config, e)
        name = config.backbone
        try:
            # as create_embedder: "auto" means the head's own backbone when there is a head
            name = head.backbone if head is not None and name == "auto" else resolve_backbone(name)[0]
            if any(s.config.name == config.name and s.backbone == name for s in self.served):
                raise LookalikeError(f"catalogue {config.name!r} is listed twice with backbone {name}")
            key = (config.spec, config.classes, config.per_class)
            if key not in self._catalogues:
                self._catalogues[key] = load_catalogue(config.spec, config.classes, per_class=config.per_class,
                                                       cache_dir=self.cache_dir)
        except Exception as e:  # any catalogue that can't be read is listed as unavailable, the others served
            log.warning("catalogue %s unavailable: %s", config.name, e, exc_info=not isinstance(e, LookalikeError))
            return Served(config, name, state=unavailable(config, e))
        if head is not None and head.backbone != name:
            head, head_note = None, no_head_note(config, f"it was trained on {head.backbone} features, not {name}")
        return Served(config, name, self._catalogues[key], head, finetuned_note=head_note)

    def _backbone(self, name: str) -> Backbone:
        """One Backbone per name, shared by every catalogue (made on first use)."""
        if name not in self._backbones:
            self._backbones[name] = create_backbone(name, device=self.device, cache_dir=self.cache_dir)
        return self._backbones[name]

    def build_all(self):
        """Build every catalogue's indexes (at start-up, once the page is up);
        one that fails becomes unavailable with its reason."""
        for served in self.served:
            if not served.building:
                continue
            log.info("catalogue %s (%s): building or reusing features and indexes", served.config.name,
                     served.backbone)
            try:
                served.build(self._backbone(served.backbone), self.cache_dir, self.trainer)
            except Exception as e:  # keep serving the others, say why
                log.exception("catalogue %s failed to build", served.config.name)
                served.state = unavailable(served.config, e)
            else:
                log.info("catalogue %s (%s): ready, %d items indexed in %.1f s", served.config.name,
                         served.backbone, len(served.pretrained.index), time.monotonic() - served.build_started)

    @property
    def building(self) -> bool:
        return any(s.building for s in self.served)

    def names(self, loaded_only=False) -> list:
        """Catalogue names in manifest order (only those whose catalogue loaded)."""
        return list(dict.fromkeys(s.config.name for s in self.served if s.catalogue or not loaded_only))

    def backbones(self, catalogue: str) -> list:
        return [s.backbone for s in self.served if s.config.name == catalogue]

    def get(self, catalogue: str, backbone: str | None = None) -> Served:
        """The served catalogue for a name (and backbone; default its first)."""
        matches = [s for s in self.served if s.config.name == catalogue
                   and (not backbone or s.backbone == backbone)]
        if not matches:
            raise LookalikeError(f"unknown catalogue {shown(catalogue)}"
                                 + (f" with backbone {shown(backbone)}" if backbone else "")
                                 + f"; served: {', '.join(self.names())}")
        return matches[0]

    def examples(self, catalogue: str, n=8) -> list:
        """n catalogue items from classes spread over the catalogue."""
        cat = self.get(catalogue).catalogue
        if cat is None:
            return []
        rows = list(range(len(cat)))
        if cat.has_labels:  # one item of each class, classes spread over the catalogue
            first = {}
            for row, label in enumerate(cat.labels):
                first.setdefault(label, row)
            rows = list(first.values())
        return [Example(row, cat.label_of(row) or cat.ids[row], self.thumbnails.path(cat, row))
                for row in rows[::max(1, len(rows) // n)][:n]]

    def item_id(self, catalogue: str, row: int) -> str:
        cat = self.get(catalogue).catalogue
        if not 0 <= row < len(cat):
            raise LookalikeError(f"catalogue {catalogue!r} has no item {row}")
        return cat.ids[row]

    def thumbnail(self, catalogue: str, row: int) -> Path:
        return self.thumbnails.path(self.get(catalogue).catalogue, row)

    def answer(self, query: Query, catalogue: str, backbone=None) -> Answer:
        """Search both embeddings with one backbone pass per uploaded image
        (validated; none when the same image was asked with before) and none
        for catalogue items (their stored embeddings).
        The first liked item is shown apart; examples never come back."""
        served = self.get(catalogue, backbone)
        if not served.ready:
            raise LookalikeError(f"catalogue {served.config.name!r} is not ready ({served.state})")
        query, cat = query.checked(), served.catalogue
        first = cat.row(query.items[0]) if query.items else None
        shown = None if first is None else QueryItem(cat.ids[first], cat.label_of(first),
                                                     self.thumbnails.path(cat, first), cat.metadata(first))
        batcher = self._batcher(served)  # an upload is validated once, for both sides
        models = tuple(rec.embedder.fingerprint if rec else None for rec in (getattr(served, s) for s in SIDES))
        uploads = [self._uploads.get(models, image, batcher) for image in query.images]
        unliked_uploads = [self._uploads.get(models, image, batcher) for image in query.unlike_images]
        same = shown.label if shown is not None and not query.images and cat.has_labels else None
        sides = {}
        for side in SIDES:
            rec = getattr(served, side)
            if rec is None:
                sides[side] = Side(None, note=served.finetuned_note)
                continue
            results = rec.answer(query, [u[side] for u in uploads], [u[side] for u in unliked_uploads])
            sides[side] = Side(rec.embedding_name, [
                Match(r.rank, r.id, r.label, r.score, r.row, self.thumbnails.path(cat, r.row),
                      None if same is None else r.label == same, r.metadata, r.near_identical) for r in results])
        return Answer(served.config.name, served.backbone, query.k, shown, sides)

    def _batcher(self, served: Served) -> QueryBatcher:
        """Concurrent queries of a catalogue share its passes (batching.py)."""
        with self._batchers_lock:
            if id(served) not in self._batchers:
                self._batchers[id(served)] = QueryBatcher(served.embed_queries)
            return self._batchers[id(served)]

    def recommend(self, image, catalogue: str, k: int = 10, backbone=None, where=None) -> dict:
        """The /recommend JSON: an uploaded image's answer."""
        return self.answer(Query(images=[image], k=k, where=where), catalogue, backbone).to_dict()

    def similar(self, catalogue: str, items, k: int = 10, where=None, unlike=(), backbone=None) -> dict:
        """The /similar JSON: the answer for catalogue items (ids, or one
        comma-separated string of them) and the ones disliked."""
        return self.answer(Query(items=_ids(items), unlike_items=_ids(unlike), k=k, where=where), catalogue,
                           backbone).to_dict()

    def status(self) -> list:
        return [s.status_record() for s in self.served]

    def fields(self, catalogue: str) -> dict:
        """{field: {"type", "values" (a string field's, when at most FEW_VALUES) or "range" ([min, max]
        of a number field)}} of a catalogue's metadata, for the page's filter controls."""
        cat = self.get(catalogue).catalogue
        return {} if cat is None else field_summary(cat)

    def duplicates(self, catalogue: str, backbone=None) -> list:
        """Groups of near-duplicates in a catalogue (pretrained embedding), each a list of Examples."""
        served = self.get(catalogue, backbone)
        if not served.ready:
            raise LookalikeError(f"catalogue {served.config.name!r} is not ready ({served.state})")
        key = ("duplicates", id(served))
        if key not in self._views:
            self._views[key] = duplicate_groups(served.pretrained)
        cat = served.catalogue
        return [[Example(r, cat.label_of(r) or cat.ids[r], self.thumbnails.path(cat, r)) for r in g["rows"]]
                for g in self._views[key]]

    def explanation(self, query: Query, catalogue: str, side: str, result_id: str, backbone=None):
        """A picture of why a result matches the query (its first liked item or
        image) in one side's embedding: search/explain.py. A PIL image."""
        served = self.get(catalogue, backbone)
        rec = getattr(served, side, None) if side in SIDES else None
        if rec is None:
            raise LookalikeError(f"no {side} embedding to explain for catalogue {catalogue!r}")
        query, cat = query.checked(), served.catalogue
        image = open_image(query.images[0]) if query.images else cat.image(cat.row(query.items[0]))
        name = "the uploaded image" if query.images else query.items[0]
        png, _ = explain_pair(rec.embedder, image, cat.image(cat.row(result_id)), [f"query: {name}", f"{result_id}"])
        return PILImage.open(io.BytesIO(png))


def _ids(items) -> list:
    """Item ids from a list or a comma-separated string (the API's form)."""
    if isinstance(items, str):
        items = items.split(",")
    return [str(i).strip() for i in items or () if str(i).strip()]
