r"""`--where EXPR`: a small filter language over catalogue metadata.

    make == "BMW" and year >= 2010          price < query.price and not (body in ["SUV", 'van'])
    `body style` != query.`body style`      make not in []

Comparisons (`== != < <= > >=`, `in [..]`, `not in [..]`) joined by `not` > `and` > `or` and
parentheses; keywords and `true`/`false` in any case (a field named like one needs backticks).
Each side of a comparison is a catalogue field, `query.FIELD` (the query item's own value) or a
literal, and one side must be a field. Numbers (integer or float) compare with each other,
strings with strings (code point order), booleans only with `==`/`!=`. Strings take `\\`,
`\"` and `\'` escapes only. The text is hostile input: a tokenizer and a recursive-descent
parser, never eval; length and nesting are capped; every error is one short LookalikeError line.

Missing values (null, NaN): any comparison reading one is False, `in` and `not in` included,
and `not` negates that result: `price != 3` skips items without a price, `not (price == 3)`
keeps them. `to_milvus` emits the same expression, but how a missing scalar or JSON key
compares there is Milvus's own rule, not guaranteed to be this one: store values non-null there.
"""

import functools
import math
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrieval.errors import LookalikeError
from retrieval.search.where_parser import (
    COMPARE,
    KEYWORDS,
    KINDS,
    MAX_LENGTH,
    SHOWN,
    kind_of,
    one_line,
    parse,
    shown_name,
)

MILVUS_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
MILVUS_RESERVED = KEYWORDS | {"like", "exists", "is", "null", "iso", "interval"}


def describe_fields(types: dict) -> str:
    """`make (string), price (float), ...` for help texts."""
    return ", ".join(f"{shown_name(name)} ({kind})" for name, kind in sorted(types.items()))


@dataclass(frozen=True)
class Where:
    """A parsed `--where` expression: evaluate it with `mask`, or hand it to Milvus."""

    text: str
    fields: frozenset  # catalogue fields it reads
    query_fields: frozenset  # the query item's fields it reads (query.FIELD)
    _tree: tuple = dataclass_field(repr=False, compare=False)

    def __init__(self, text: str, tree: tuple, fields: frozenset, query_fields: frozenset):
        for name, value in (("text", text), ("fields", fields), ("query_fields", query_fields), ("_tree", tree)):
            object.__setattr__(self, name, value)

    @property
    def uses_query(self) -> bool:
        return bool(self.query_fields)

    def mask(self, columns, query: dict | None = None) -> np.ndarray:
        """Boolean (n,) mask over `columns` (a pyarrow Table or name -> array), whole columns at a time."""
        column = functools.cache(lambda name, kind: _column(columns, name, kind))  # each column read once

        def run(node):  # bit-packed Arrow booleans throughout: and/or/not cost microseconds
            tag = node[0]
            if tag in ("and", "or"):
                return functools.reduce(pc.and_ if tag == "and" else pc.or_, map(run, node[1]))
            if tag == "not":
                return pc.invert(run(node[1]))
            col = column(node[1], node[2])
            if tag == "in":
                hit = pc.is_in(col, value_set=_value_set(col.type, node[3]))
                return pc.and_(pc.invert(hit), _present(col)) if node[4] else _known(hit)
            other = column(*node[4][1:]) if node[4][0] == "field" else _value(node[4], query)
            col, other = _floats(col, other) if node[2] == "number" else (col, other)
            hit = _known(COMPARE[node[3]](col, other))
            if node[3] == "!=":  # the one comparison NaN passes
                hit = pc.and_(pc.and_(hit, _present(col)), _present(other))
            return hit

        hit = run(self._tree)
        hit = hit.combine_chunks() if isinstance(hit, pa.ChunkedArray) else hit
        if not len(hit):
            return np.zeros(0, bool)
        bits = np.frombuffer(hit.buffers()[1], np.uint8)
        return np.unpackbits(bits, count=hit.offset + len(hit), bitorder="little")[hit.offset:].view(bool)

    def to_milvus(self, query: dict | None = None, field=None) -> str:
        """A Milvus boolean expression. `field(name)` writes each field name (default: the name
        itself, refused unless a plain ASCII identifier); query values become literals."""
        field = field or _milvus_field

        def emit(node, inner=False) -> str:
            tag = node[0]
            if tag in ("and", "or"):
                text = f" {tag} ".join(emit(child, tag == "and") for child in node[1])
                return f"({text})" if inner and tag == "or" else text
            if tag == "not":  # Milvus's `not` binds tighter than a comparison
                return f"not ({emit(node[1])})"
            name = field(node[1])
            if tag == "in":
                return f"{name} {'not in' if node[4] else 'in'} [{', '.join(map(_literal, node[3]))}]"
            other = field(node[4][1]) if node[4][0] == "field" else _literal(_value(node[4], query))
            return f"{name} {node[3]} {other}"

        return emit(self._tree)


def _milvus_field(name: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name.lower() not in MILVUS_RESERVED:
        return name
    raise LookalikeError(f"field {shown_name(name)} can't be named in a Milvus filter as it is; map it with field=")


def _literal(value) -> str:
    """A Milvus literal nothing can break out of: strings in double quotes with Go/C escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return repr(value)  # a finite int or float
    return '"' + "".join(MILVUS_ESCAPES.get(c) or (c if c.isprintable() else f"\\U{ord(c):08x}") for c in value) + '"'


def _value(ref, query):
    """A literal's value, or the query item's value of a field (checked: it becomes a literal)."""
    if ref[0] == "lit":
        return ref[1]
    _, name, kind = ref
    if query is None:
        raise LookalikeError(f"query.{shown_name(name)} needs a catalogue item as the query")
    value = query.get(name)
    value = value.item() if isinstance(value, np.generic) else value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise LookalikeError(f"the query item has no {shown_name(name)}")
    if kind_of(value) != kind or not isinstance(value, (bool, str, int, float)) or value in (math.inf, -math.inf):
        raise LookalikeError(f"the query item's {shown_name(name)} is not a {kind}: {one_line(repr(value)[:SHOWN])}")
    return value


def _column(columns, name: str, kind: str):
    """One metadata column as a pyarrow array of the kind the filter expects."""
    try:
        col = columns[name]
    except (KeyError, IndexError):
        raise LookalikeError(f"the catalogue's metadata has no column {shown_name(name)}") from None
    if not isinstance(col, (pa.Array, pa.ChunkedArray)):
        col = pa.array(col if isinstance(col, list) else np.asarray(col), from_pandas=True)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_null(col.type):
        return col.cast({"number": pa.float64(), "string": pa.string(), "boolean": pa.bool_()}[kind])
    if kind == "number" and pa.types.is_integer(col.type):
        return col.cast(pa.int64())
    if kind == "number" and pa.types.is_floating(col.type):
        return col.cast(pa.float64())
    if (kind == "string" and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type))
            or kind == "boolean" and pa.types.is_boolean(col.type)):
        return col
    raise LookalikeError(f"the metadata column {shown_name(name)} holds {col.type}, not the {kind} --where expects")


def _known(hit):
    """Null (a missing value compared) -> False."""
    return pc.and_kleene(hit, pc.is_valid(hit))


def _present(values):
    """True where a value is there: not null, not NaN; every row for a literal."""
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        return True
    if pa.types.is_floating(values.type):
        return pc.and_(pc.is_valid(values), pc.invert(pc.is_nan(values)))
    return pc.is_valid(values)


def _floats(*sides):
    """Integers meeting a float compare as floats (past 2**53 an integer rounds, as in SQL),
    converted here since Arrow refuses a lossy cast of its own."""
    if not any(isinstance(x, float) or isinstance(x, pa.Array | pa.ChunkedArray) and pa.types.is_floating(x.type)
               for x in sides):
        return sides
    return [x.cast(pa.float64(), safe=False) if isinstance(x, pa.Array | pa.ChunkedArray) else float(x) for x in sides]


def _value_set(arrow_type, values) -> pa.Array:
    """`in [..]` values as an array of the column's type (for integers, the integral ones)."""
    if pa.types.is_integer(arrow_type):
        values = [int(v) for v in values if float(v).is_integer() and -2**63 <= v < 2**63]
    elif pa.types.is_floating(arrow_type):
        values = [float(v) for v in values]
    return pa.array(values, type=arrow_type)


def parse_where(text: str, types: dict) -> Where:
    """Parse `text` against `types` (field name -> integer/float/boolean/string)."""
    if bad := {kind for kind in types.values() if kind not in KINDS}:
        raise ValueError(f"field types must be among {sorted(KINDS)}, not {sorted(bad)}")
    if len(text) > MAX_LENGTH:
        raise LookalikeError(f"--where is too long: {len(text)} characters, at most {MAX_LENGTH}")
    if not text.strip():
        raise LookalikeError("--where is empty")
    return Where(text, *parse(text, types))
