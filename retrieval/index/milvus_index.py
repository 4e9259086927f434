"""Milvus (`--index-backend milvus`): the index as a collection in a vector
database, which also holds each item's metadata and runs `--where` filters
itself (`filters_inside`: Where.to_milvus(query, field=index.field)). Where
it lives is a MilvusTarget: a Milvus Lite database (a path ending in .db,
by default `<cache>/milvus/lookalike.db`; pymilvus starts Lite in this
process) or a Milvus server (`http://HOST:19530` and a token); the same code
serves both.

Keys are the collection's INT64 primary key. Vectors are L2-normalised here
and compared by inner product (= cosine). Measured (docs/scaling.md): on
Milvus Lite the index is FLAT, exact, so a filtered search fills k whenever
k items match (Lite's HNSW applies a filter inside the graph walk and fell
short for every query of a 0.1% filter); on a server AUTOINDEX, and a
filtered search that comes back short although more items match is redone
exactly when few match (else logged). Consistency Strong: a search sees
every write before it. The collection's properties record its meta (what
meta.json holds for a folder index) and its state, "ready" only once a build
or update has finished: `open` treats anything else as absent.

pymilvus and milvus_lite are imported inside functions, as usearch is."""

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from retrieval.errors import LookalikeError
from retrieval.index import milvus_schema as schema
from retrieval.index.base import RECALL_K, Index, keys_of
from retrieval.index.milvus_schema import KEY, VECTOR, is_lite, one_line, place
from retrieval.vectors import l2_normalise, recall_at_k, top_k

log = logging.getLogger(__name__)

FORMAT = 1
META, STATE, READY = "lookalike.meta", "lookalike.state", "ready"
METRIC, EXACT_TYPES = "IP", ("FLAT", "BRUTE_FORCE")
MAX_K = 16_384  # Milvus' limit on topk and on queries per request
KEYS_PER_REQUEST = 10_000  # in `lookalike_key in [...]` and get(ids=...)
EXACT_FALLBACK = 50_000  # a short filtered result is redone exactly when at most this many match
CONNECT_SECONDS = 10
# pymilvus pings every 10 s even when idle; Milvus Lite's gRPC server allows one
# ping in 5 minutes without calls and sends GOAWAY after 30 s idle (during an
# extraction, say), failing the call that meets it (the 100k bench run did)
LITE_GRPC = {"grpc.keepalive_time_ms": 600_000}
AUDIT_QUERIES = 200
MAX_META_BYTES = 64 * 1024


@dataclass(frozen=True)
class MilvusTarget:
    """Where a collection lives: `uri` a Milvus Lite .db path or a server's
    http(s)://HOST:PORT, `name` the collection, `token` user:password or an API key."""

    uri: str
    name: str
    token: str | None = field(default=None, repr=False)


def collection_name(expected: dict) -> str:
    """One collection per index fingerprint: `lookalike_` + 16 hex digits."""
    blob = json.dumps([expected, "milvus", FORMAT], sort_keys=True, default=str).encode()
    return "lookalike_" + hashlib.sha256(blob).hexdigest()[:16]


def default_uri(cache_root) -> str:
    return str(Path(cache_root) / "milvus" / "lookalike.db")


class MilvusIndex(Index):
    backend = "milvus"
    filters_inside = True

    def __init__(self, client, target: MilvusTarget, meta: dict):
        self.client, self.target, self.meta = client, target, meta

    @property
    def location(self) -> str:
        return f"collection {self.target.name} in {place(self.target.uri)}"

    @property
    def grows_in_place(self) -> bool:
        return True

    def summary(self) -> str:
        m = self.meta
        host = "Milvus Lite" if is_lite(self.target.uri) else "Milvus server"
        return (f"milvus ({host}), collection {self.target.name}, {m['index_type']} {m['metric']}, "
                f"recall@10 vs exact {m['recall_at_10']:.3f}")

    def field(self, name: str) -> str:
        """The stored field name of catalogue metadata field `name` (Where.to_milvus's `field`)."""
        spec = self.meta["fields"].get(name)
        if spec is None:
            raise LookalikeError(f"the Milvus index holds no field {name!r} (it holds: "
                                 f"{', '.join(sorted(self.meta['fields'])) or 'none'}); rebuild it with that metadata")
        return spec["field"]

    # ---- building and opening

    @classmethod
    def build(cls, target: MilvusTarget, vectors, meta: dict, keys=None, metadata=None, index_type: str | None = None,
              progress=True) -> "MilvusIndex":
        """(Re)build the collection over `vectors` (normalised here) under
        `keys`, each with its row of `metadata`; "ready" only at the end."""
        started = time.perf_counter()
        vectors = _vectors(vectors)
        keys = _unique(keys_of(np.arange(len(vectors)) if keys is None else keys, len(vectors)))
        metadata = schema.checked_metadata(metadata, len(keys))
        index_type = index_type or ("FLAT" if is_lite(target.uri) else "AUTOINDEX")
        meta = dict(meta or {}, backend=cls.backend, format=FORMAT, dim=vectors.shape[1], metric=METRIC,
                    index_type=index_type, fields=schema.metadata_fields(metadata), n_items=len(keys))
        client = _connect(target)
        with one_line(target.uri, f"building collection {target.name}"):
            if client.has_collection(target.name):
                if STATE not in (client.describe_collection(target.name).get("properties") or {}):
                    raise LookalikeError(f"collection {target.name} in {place(target.uri)} was not written by "
                                         "Lookalike: refusing to drop it; point --milvus-uri at another database")
                client.drop_collection(target.name)
            schema.create(client, target.name, vectors.shape[1], meta["fields"], index_type,
                          {META: _record(meta), STATE: "building"}, METRIC)
        self = cls(client, target, meta)
        self._write("insert", keys, vectors, metadata, progress)
        with one_line(target.uri, f"building collection {target.name}"):
            client.flush(target.name)
            client.load_collection(target.name)
        audit = np.random.default_rng(0).choice(len(keys), min(AUDIT_QUERIES, len(keys)), replace=False)
        truth, _ = top_k(vectors, vectors[audit], min(RECALL_K, len(keys)))
        recall = recall_at_k(self.search(vectors[audit], truth.shape[1])[0], keys[truth]) if len(audit) else 1.0
        self._record(dict(meta, recall_at_10=round(recall, 4), audit_queries=len(audit),
                          build_seconds=round(time.perf_counter() - started, 2)))
        return self

    @classmethod
    def open(cls, target: MilvusTarget, expected: dict) -> "MilvusIndex | None":
        """The collection (None when absent or its build or last update never
        finished); refused when built for other data."""
        client = _connect(target)
        with one_line(target.uri, f"opening collection {target.name}"):
            if not client.has_collection(target.name):
                return None
            described = client.describe_collection(target.name)
        properties = described.get("properties") or {}
        where = f"collection {target.name} in {place(target.uri)}"
        if properties.get(STATE) != READY:
            log.warning("%s: its build or last update did not finish; it will be rebuilt", where)
            return None
        meta = schema.read_record(where, properties.get(META), expected, described)
        with one_line(target.uri, f"loading collection {target.name}"):
            client.load_collection(target.name)
        return cls(client, target, meta)

    # ---- reading

    def search(self, queries, k, exact=False, expr: str | None = None):
        """(keys, scores) (m, k) of the nearest items among those matching
        `expr` (a Milvus boolean expression, run inside Milvus)."""
        queries = l2_normalise(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if queries.ndim != 2 or queries.shape[1] != self.meta["dim"]:
            raise LookalikeError(f"queries of shape {queries.shape} can't search an index of dimension "
                                 f"{self.meta['dim']}")
        if not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
            raise LookalikeError(f"k must be an integer from 1 to {MAX_K:,}, not {k!r}")
        approximate = self.meta["index_type"] not in EXACT_TYPES
        if exact and approximate:
            return self._exact(queries, k, expr)
        keys = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), np.nan, dtype=np.float32)
        step = max(1, min(MAX_K, schema.REQUEST_BYTES // (4 * queries.shape[1])))
        params = {"metric_type": METRIC, "params": {"ef": max(64, int(k))} if self.meta["index_type"] == "HNSW" else {}}
        for start in range(0, len(queries), step):
            with one_line(self.target.uri, "search", expr):
                hits = self.client.search(self.target.name, data=queries[start:start + step].tolist(), limit=int(k),
                                          filter=expr or "", output_fields=[KEY], search_params=params,
                                          anns_field=VECTOR)
            for i, found in enumerate(hits, start):
                keys[i, :len(found)] = [hit[KEY] for hit in found]
                scores[i, :len(found)] = [hit["distance"] for hit in found]
        short = np.flatnonzero(keys[:, -1] < 0)
        if expr and approximate and len(short):
            self._refill(queries, k, expr, keys, scores, short)
        return keys, scores

    def _refill(self, queries, k, expr, keys, scores, short):
        """A graph index can come back short under a selective filter
        (milvus-io/milvus#33933): those queries are searched exactly when few
        enough items match to fetch them, else it is logged."""
        matching = self._count(expr)
        if matching <= int((keys[short] >= 0).sum(axis=1).min()):
            return
        if matching > EXACT_FALLBACK:
            log.warning("%s: a %s search returned fewer than k=%d of the %d items matching %r", self.location,
                        self.meta["index_type"], k, matching, expr)
            return
        keys[short], scores[short] = self._exact(queries[short], k, expr)

    def _exact(self, queries, k, expr=None):
        """Exact search: every matching item's vector fetched and scored here."""
        keys = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for batch in self._iterate([KEY, VECTOR], expr):
            batch_keys = np.array([row[KEY] for row in batch], dtype=np.int64)
            vectors = np.array([row[VECTOR] for row in batch], dtype=np.float32)
            all_keys = np.concatenate([keys, np.broadcast_to(batch_keys, (len(queries), len(batch_keys)))], 1)
            all_scores = np.concatenate([scores, queries @ vectors.T], 1)
            best = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
            keys, scores = np.take_along_axis(all_keys, best, 1), np.take_along_axis(all_scores, best, 1)
        return np.where(keys >= 0, keys, -1), np.where(keys >= 0, scores, np.nan).astype(np.float32)

    def _iterate(self, fields, expr=None):
        with one_line(self.target.uri, f"reading collection {self.target.name}", expr):
            size = max(1, min(MAX_K, schema.REQUEST_BYTES // (4 * self.meta["dim"] + 8)))
            rows = self.client.query_iterator(self.target.name, size, filter=expr or "", output_fields=fields)
            try:
                while batch := rows.next():
                    yield batch
            finally:
                rows.close()

    def _count(self, expr="") -> int:
        with one_line(self.target.uri, f"counting collection {self.target.name}", expr or None):
            return int(self.client.query(self.target.name, filter=expr, output_fields=["count(*)"])[0]["count(*)"])

    def all_keys(self) -> np.ndarray:
        found = [np.array([row[KEY] for row in batch], dtype=np.int64) for batch in self._iterate([KEY])]
        return np.sort(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)

    def has(self, keys) -> np.ndarray:
        keys = keys_of(keys)
        present = set()
        for start in range(0, len(keys), KEYS_PER_REQUEST):
            chunk = np.unique(keys[start:start + KEYS_PER_REQUEST]).tolist()
            with one_line(self.target.uri, f"reading collection {self.target.name}"):
                present.update(row[KEY] for row in self.client.query(
                    self.target.name, filter=f"{KEY} in {chunk}", output_fields=[KEY], limit=len(chunk)))
        return np.isin(keys, np.fromiter(present, dtype=np.int64, count=len(present)))

    def vectors(self, keys) -> np.ndarray:
        keys = keys_of(keys)
        unique = np.unique(keys)
        found = {}
        for start in range(0, len(unique), KEYS_PER_REQUEST):
            with one_line(self.target.uri, f"reading collection {self.target.name}"):
                rows = self.client.get(self.target.name, ids=unique[start:start + KEYS_PER_REQUEST].tolist(),
                                       output_fields=[VECTOR])
            found.update((row[KEY], row[VECTOR]) for row in rows)
        missing = [key for key in unique.tolist() if key not in found]
        if missing:
            raise KeyError(f"keys not in the index: {missing[:5]}")
        return np.array([found[key] for key in keys.tolist()], dtype=np.float32).reshape(len(keys), -1)

    # ---- writing

    def update(self, vectors, keys, removed, meta: dict, metadata=None):
        """Remove the `removed` keys (ones not there are ignored), then upsert
        the added items (normalised here; a key already there is replaced,
        vector and metadata, a field left out of `metadata` null), then record
        `meta`. The collection reads "updating" meanwhile: one that never
        finished is rebuilt on the next `open`."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.meta["dim"])
        vectors = _vectors(vectors) if len(vectors) else vectors
        keys, removed = _unique(keys_of(keys, len(vectors))), keys_of(removed)
        metadata = schema.checked_metadata(metadata, len(keys), self.meta["fields"])
        self._set_state("updating")
        for start in range(0, len(removed), KEYS_PER_REQUEST):
            with one_line(self.target.uri, f"deleting from collection {self.target.name}"):
                self.client.delete(self.target.name, ids=removed[start:start + KEYS_PER_REQUEST].tolist())
        self._write("upsert", keys, vectors, metadata, progress=False)
        own = {k: self.meta[k] for k in ("backend", "format", "dim", "metric", "index_type", "fields")}
        self._record({**self.meta, **meta, **own, "n_items": self._count()})

    def close(self, release_lite=False):
        """Close the connection; with `release_lite`, also stop this process's
        Milvus Lite server on the .db (for every index on it here), so that
        another process may open the database."""
        self.client.close()
        if release_lite and is_lite(self.target.uri):
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(str(Path(self.target.uri).expanduser().resolve()))

    def _write(self, verb, keys, vectors, metadata, progress):
        send = getattr(self.client, verb)
        with tqdm(total=len(keys), desc=f"milvus {verb}", unit="item", disable=not progress) as bar:
            for rows in schema.row_batches(keys, vectors, metadata, self.meta["fields"]):
                with one_line(self.target.uri, f"{verb} into collection {self.target.name}"):
                    send(self.target.name, rows)
                bar.update(len(rows))

    def _record(self, meta: dict):
        """Record `meta` and mark the collection ready, as its last step."""
        text = _record(meta)
        with one_line(self.target.uri, f"recording collection {self.target.name}"):
            self.client.alter_collection_properties(self.target.name, {META: text, STATE: READY})
        self.meta = meta

    def _set_state(self, state: str):
        with one_line(self.target.uri, f"changing collection {self.target.name}"):
            self.client.alter_collection_properties(self.target.name, {STATE: state})


def _record(meta: dict) -> str:
    text = json.dumps(meta, sort_keys=True)
    if len(text.encode()) > MAX_META_BYTES:
        raise LookalikeError(f"index meta of {len(text.encode()):,} bytes is too large to record with a Milvus "
                             f"collection (at most {MAX_META_BYTES:,})")
    return text


def _vectors(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or not 1 <= vectors.shape[1] <= 32_768:
        raise LookalikeError(f"vectors must be (n, dim) with dim 1 to 32,768, not of shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise LookalikeError("vectors hold NaN or infinite values")
    return l2_normalise(vectors)


def _unique(keys: np.ndarray) -> np.ndarray:
    if len(np.unique(keys)) < len(keys):
        raise LookalikeError("keys must be unique: one per item")
    return keys


def _connect(target: MilvusTarget):
    """A MilvusClient: a .db path starts Milvus Lite on it in this process."""
    uri = str(target.uri)
    if is_lite(uri):
        uri = str(Path(uri).expanduser().resolve())
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    elif not uri.startswith(("http://", "https://", "tcp://", "unix://")):
        raise LookalikeError(f"--milvus-uri must be a path ending in .db (Milvus Lite) or http(s)://HOST:PORT, "
                             f"not {schema.redacted(uri)!r}")
    from pymilvus import MilvusClient

    schema.quiet()
    with one_line(uri, "connecting"):
        return MilvusClient(uri=uri, token=target.token or "", timeout=CONNECT_SECONDS,
                            **({"grpc_options": LITE_GRPC} if is_lite(uri) else {}))
