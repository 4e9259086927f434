"""What a Milvus collection holding a Lookalike index looks like, and turning
Milvus' failures into one line (retrieval/index/milvus_index.py uses it).

Fields: the key `lookalike_key` (INT64, primary), the vector
`lookalike_vector` (FLOAT_VECTOR) and one typed, nullable scalar field per
metadata column: integers INT64, floats DOUBLE (NaN stored as null),
booleans BOOL, strings VARCHAR. A column whose name is not a plain ASCII
identifier (letters, digits, _; not a filter keyword such as `in` or `like`,
not starting with `lookalike_`) is stored as `f<position>_<its letters>`;
the map from catalogue name to stored name is recorded with the collection
(meta "fields") and `MilvusIndex.field` reads it. pymilvus is imported
inside functions only (see milvus_index.py)."""

import json
import logging
import math
import re
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from retrieval.errors import DamagedArtefact, LookalikeError
from retrieval.index.base import check_fingerprints

KEY, VECTOR = "lookalike_key", "lookalike_vector"
KINDS = ("int64", "double", "bool", "varchar")
MAX_VARCHAR_BYTES = 65_535
MAX_METADATA_FIELDS = 62  # Milvus takes 64 fields per collection, key and vector included
# Milvus' filter words (and Lookalike's): a field named like one can't be written in a filter
RESERVED = {"and", "or", "not", "in", "true", "false", "like", "exists", "is", "null", "iso", "interval"}
PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
REQUEST_BYTES = 16 * 2**20  # per insert/upsert/search request (Milvus' limit is 64 MB; measured in NOTES)


def is_lite(uri: str) -> bool:
    """A path ending in .db: Milvus Lite, started in this process."""
    return str(uri).endswith(".db") and "://" not in str(uri)


def redacted(uri: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", str(uri))


def place(uri: str) -> str:
    return f"Milvus Lite {uri}" if is_lite(uri) else f"Milvus at {redacted(uri)}"


# ---- metadata columns -> typed fields

def metadata_fields(metadata: pa.Table) -> dict:
    """{catalogue name: {"field": stored name, "type": kind}} for the columns of `metadata`."""
    fields, taken = {}, {KEY, VECTOR}
    for position, column in enumerate(metadata.schema):
        stored = column.name
        if not PLAIN.fullmatch(stored) or stored.lower() in RESERVED or stored.startswith("lookalike_"):
            letters = re.sub(r"[^A-Za-z0-9_]+", "_", column.name).strip("_")[:40]
            stored = f"f{position}_{letters}".rstrip("_")
        while stored in taken:
            stored += "_"
        taken.add(stored)
        fields[column.name] = {"field": stored, "type": kind_of(column.name, column.type)}
    if len(fields) > MAX_METADATA_FIELDS:
        raise LookalikeError(f"{len(fields)} metadata fields: a Milvus collection takes at most {MAX_METADATA_FIELDS}")
    return fields


def kind_of(name: str, t: pa.DataType, nulls=False) -> str:
    """The field kind of an Arrow type; "null" (with `nulls`) for a column of nothing but missing values."""
    t = t.value_type if pa.types.is_dictionary(t) else t
    for kind, test in (("bool", pa.types.is_boolean), ("int64", pa.types.is_integer), ("double", pa.types.is_floating),
                       ("varchar", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t))):
        if test(t):
            return kind
    if pa.types.is_null(t) and nulls:
        return "null"
    raise LookalikeError(f"metadata field {name!r} is of type {t}: a Milvus index stores integers, floats, booleans "
                         "and strings (cast it, or leave it out)")


def checked_metadata(metadata, n: int, fields: dict | None = None) -> pa.Table:
    """`metadata` as a Table of n rows; with `fields` (a built collection's),
    only columns it has, of its types."""
    if metadata is None:
        return pa.table({})
    if isinstance(metadata, pa.RecordBatch):
        metadata = pa.Table.from_batches([metadata])
    if not isinstance(metadata, pa.Table):
        raise LookalikeError("metadata must be a pyarrow Table")
    if metadata.num_columns and metadata.num_rows != n:
        raise LookalikeError(f"metadata has {metadata.num_rows} rows for {n} items")
    if fields is not None:
        extra = [c for c in metadata.column_names if c not in fields]
        if extra:
            raise LookalikeError(f"metadata fields {extra} are not in the Milvus index (it has {sorted(fields)}): "
                                 "rebuild it to add fields")
        wrong = [f"{c} is {kind}, not {fields[c]['type']}" for c in metadata.column_names
                 for kind in [kind_of(c, metadata.schema.field(c).type, nulls=True)]
                 if kind not in ("null", fields[c]["type"])]
        if wrong:
            raise LookalikeError("metadata of other types than the Milvus index's: " + ", ".join(wrong))
    return metadata


def column_values(column: pa.ChunkedArray, kind: str) -> list:
    """A column's Python values, None where missing (NaN counts as missing)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    values = column.to_pylist()
    if kind == "double":
        return [None if v is None or math.isnan(v) else float(v) for v in values]
    if kind == "int64" and any(v is not None and not -2**63 <= v < 2**63 for v in values):
        raise LookalikeError("an integer metadata value doesn't fit in 64 bits")
    if kind == "varchar" and any(v is not None and len(v.encode()) > MAX_VARCHAR_BYTES for v in values):
        raise LookalikeError(f"a string metadata value is longer than Milvus' {MAX_VARCHAR_BYTES:,} bytes")
    return values


def row_batches(keys, vectors, metadata: pa.Table, fields: dict):
    """Rows to insert, in lists of about REQUEST_BYTES each (vectors plus the
    metadata's size); a field left out of `metadata` is null."""
    columns = {fields[name]["field"]: column_values(metadata.column(name), fields[name]["type"])
               for name in metadata.column_names}
    missing = dict.fromkeys(spec["field"] for spec in fields.values() if spec["field"] not in columns)
    batch, size = [], 0
    for i, key in enumerate(keys.tolist()):
        row = {KEY: key, VECTOR: vectors[i], **missing, **{name: values[i] for name, values in columns.items()}}
        row_size = 8 + 4 * vectors.shape[1] + sum(len(values[i]) + 8 if isinstance(values[i], str) else 9
                                                  for values in columns.values())
        if batch and size + row_size > REQUEST_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch


# ---- the collection

def create(client, name: str, dim: int, fields: dict, index_type: str, properties: dict, metric: str):
    """An empty collection with its vector index, consistency Strong."""
    from pymilvus import DataType

    types = {"int64": DataType.INT64, "double": DataType.DOUBLE, "bool": DataType.BOOL, "varchar": DataType.VARCHAR}
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(KEY, DataType.INT64, is_primary=True)
    schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=dim)
    for spec in fields.values():
        extra = {"max_length": MAX_VARCHAR_BYTES} if spec["type"] == "varchar" else {}
        schema.add_field(spec["field"], types[spec["type"]], nullable=True, **extra)
    index = client.prepare_index_params()
    index.add_index(VECTOR, index_type=index_type, metric_type=metric)
    client.create_collection(name, schema=schema, consistency_level="Strong", properties=properties)
    # on an empty collection the index is made at once; not waiting (sync)
    # spares Milvus Lite an RPC it lacks (AllocTimestamp: a stall and a traceback)
    client.create_index(name, index, sync=False)


def read_record(where: str, text, expected: dict, described: dict) -> dict:
    """The meta a collection records (its property), checked: a damaged
    record is a DamagedArtefact, other fingerprints a LookalikeError (as a
    folder's: base.check_fingerprints)."""
    try:
        meta = json.loads(text)
    except (TypeError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("backend") != "milvus" or not isinstance(meta.get("fields"), dict):
        raise DamagedArtefact(f"{where}: its record is damaged or was not written by Lookalike; rebuild it "
                              "(`python -m retrieval index --rebuild`)")
    check_fingerprints(where, meta, expected, record=where, elsewhere="--milvus-uri")
    have = {f["name"]: f for f in described.get("fields", [])}
    lacking = [f for f in [KEY, VECTOR, *(s["field"] for s in meta["fields"].values())] if f not in have]
    dim = (have.get(VECTOR) or {}).get("params", {}).get("dim")
    if lacking or dim is None or int(dim) != meta.get("dim"):
        raise DamagedArtefact(f"{where}: its fields don't match its record (missing {lacking}, dimension {dim} "
                              f"vs {meta.get('dim')}); rebuild it")
    return meta


# ---- failures as one line

def quiet():
    """pymilvus logs every failed call (and failed reconnection) with a
    traceback before raising, Milvus Lite its failure to start: each is raised
    here as one line instead. (Set after importing pymilvus: its
    logging.config call at import sets these loggers' levels.)"""
    for name in ("pymilvus", "pymilvus.milvus_client", "milvus_lite.server_manager"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@contextmanager
def one_line(uri: str, action: str, expr: str | None = None):
    """Milvus' and gRPC's exceptions as one-line LookalikeErrors saying what to do."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except LookalikeError:
        raise
    except Exception as e:
        if not isinstance(e, MilvusException) and not type(e).__module__.startswith("grpc"):
            raise
        raise LookalikeError(explain(uri, action, e, expr)) from e


# How Milvus says an expression is wrong: Milvus Lite 3's parser points at a
# column; a Milvus server can't "parse expression" or "create query plan". Any
# other failure of a filtered search is the engine's, not the filter's.
EXPRESSION_ERRORS = ("at column", "expression", "query plan")


def explain(uri: str, action: str, e: Exception, expr: str | None) -> str:
    where, causes = place(uri), _chain(e)
    message = _message(e)
    low = " ".join(_message(c) for c in causes).lower()
    codes = {_grpc_code(c) for c in causes}
    if "UNAUTHENTICATED" in codes or getattr(e, "code", None) == 1800 or "auth check failure" in low:
        return (f"{where} refused the credentials ({_message(causes[-1])}): check --milvus-token or "
                "LOOKALIKE_MILVUS_TOKEN (user:password, or an API key)")
    if "open local milvus failed" in low:
        if lite_locked(uri):
            return (f"{where} is open in another process: Milvus Lite serves one process at a time (stop that one, "
                    "or share the database through `milvus-lite server` and --milvus-uri http://127.0.0.1:PORT)")
        return f"Milvus Lite couldn't open {uri} (damaged, or not a Milvus Lite 3 database?): {message}"
    if "UNIMPLEMENTED" in codes or "unimplemented" in low:
        return (f"{where} doesn't answer as Milvus does: is --milvus-uri its gRPC address (port 19530), not an "
                "HTTP or proxy port, and is the server Milvus 2.5 or later?")
    if ("fail connecting" in low or codes & {"UNAVAILABLE", "DEADLINE_EXCEEDED"}) and is_lite(uri):
        return f"can't reach {where}: its server in this process was stopped (index closed); open it again"
    if "fail connecting" in low or codes & {"UNAVAILABLE", "DEADLINE_EXCEEDED"}:
        return f"can't reach {where}: is it running, and is --milvus-uri its gRPC address (port 19530)? ({message})"
    if getattr(e, "code", None) == 100 or "collection" in low and ("not exist" in low or "not found" in low):
        return f"{where}: {action}: the collection is gone ({message}); rebuild the index"
    if expr is not None and any(sign in low for sign in EXPRESSION_ERRORS):
        return f"bad filter expression {expr!r}: " + "; ".join(p for p in message.split("; ") if p != expr.strip())
    return f"{where}: {action} failed: {message}"


def lite_locked(uri: str) -> bool:
    """Whether another process holds the Milvus Lite database's lock (a flock on its LOCK file)."""
    import fcntl

    try:
        with open(Path(uri).expanduser().resolve() / "LOCK", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _message(e) -> str:
    """One line of an exception's message, without Milvus' echo of the expression and its ^^^ marker."""
    text = getattr(e, "message", None)
    if not text and callable(getattr(e, "details", None)):
        text = e.details()
    lines = [line.strip() for line in str(text or e).splitlines()]
    return "; ".join(line for line in lines if line and not line.startswith("^"))[:500]


def _chain(e) -> list:
    chain = []
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    return chain


def _grpc_code(e) -> str | None:
    code = getattr(e, "code", None)
    if callable(code):
        try:
            return code().name
        except Exception:  # an RpcError without a status
            return None
    return None
