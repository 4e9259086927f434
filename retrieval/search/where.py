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
import unicodedata
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrieval.errors import LookalikeError

MAX_LENGTH, MAX_DEPTH, SHOWN = 2000, 32, 40
KINDS = {"integer": "number", "float": "number", "boolean": "boolean", "string": "string"}
COMPARE = {"==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal, ">": pc.greater,
           ">=": pc.greater_equal}
FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
KEYWORDS = {"and", "or", "not", "in", "true", "false"}
TOKEN = re.compile(r"""(?P<space>\s+) | (?P<num>-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    | (?P<name>[^\W\d][\w\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]*)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*') | (?P<field>`[^`]+`)
    | (?P<op>==|!=|<=|>=|[<>()\[\],.])""", re.VERBOSE | re.DOTALL)
MILVUS_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
MILVUS_RESERVED = KEYWORDS | {"like", "exists", "is", "null", "iso", "interval"}


def _line(text: str) -> str:
    """User text made safe to print on one line: no newlines or control characters."""
    return "".join(c if c.isprintable() else " " for c in text)


def _show(name: str) -> str:
    """A field name as the user would type it, shortened."""
    shown = name if re.fullmatch(r"[^\W\d]\w*", name) else f"`{name}`"
    return _line(shown if len(shown) <= SHOWN else shown[:SHOWN] + "...")


def describe_fields(types: dict) -> str:
    """`make (string), price (float), ...` for help texts."""
    return ", ".join(f"{_show(name)} ({kind})" for name, kind in sorted(types.items()))


def _kind(value) -> str:
    return "boolean" if isinstance(value, bool) else "string" if isinstance(value, str) else "number"


@dataclass(frozen=True)
class Where:
    """A parsed `--where` expression: evaluate it with `mask`, or hand it to Milvus."""

    text: str
    fields: frozenset  # catalogue fields it reads
    query_fields: frozenset  # the query item's fields it reads (query.FIELD)
    _tree: tuple = dataclass_field(repr=False, compare=False)

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
    raise LookalikeError(f"field {_show(name)} can't be named in a Milvus filter as it is; map it with field=")


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
        raise LookalikeError(f"query.{_show(name)} needs a catalogue item as the query")
    value = query.get(name)
    value = value.item() if isinstance(value, np.generic) else value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise LookalikeError(f"the query item has no {_show(name)}")
    if _kind(value) != kind or not isinstance(value, (bool, str, int, float)) or value in (math.inf, -math.inf):
        raise LookalikeError(f"the query item's {_show(name)} is not a {kind}: {_line(repr(value)[:SHOWN])}")
    return value


def _column(columns, name: str, kind: str):
    """One metadata column as a pyarrow array of the kind the filter expects."""
    try:
        col = columns[name]
    except (KeyError, IndexError):
        raise LookalikeError(f"the catalogue's metadata has no column {_show(name)}") from None
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
    raise LookalikeError(f"the metadata column {_show(name)} holds {col.type}, not the {kind} --where expects")


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
    return _Parser(text, types).where()


class _Parser:
    """Recursive descent over the tokens. A field or type problem is told only once the whole
    text has parsed, so a syntax error (`__import__('os')`) always comes first."""

    def __init__(self, text: str, types: dict):
        self.text, self.types, self.depth, self.at = text, types, 0, 0
        self.named = {unicodedata.normalize("NFC", name): name for name in types}
        self.fields, self.query_fields, self.problem = set(), set(), None
        self.tokens = self.tokenize()

    def fail(self, what: str, pos: int | None = None):
        if pos is None:
            raise LookalikeError(what)
        before, after = self.text[max(0, pos - SHOWN):pos], self.text[pos:pos + 15]
        shown = "... " * (pos > SHOWN) + before + "▲" + after + "..." * (pos + 15 < len(self.text))
        raise LookalikeError(f"--where: {what} at character {pos + 1}: {_line(shown)}")

    def later(self, what: str, pos: int | None = None):
        self.problem = self.problem or (what, pos)

    def tokenize(self) -> list:
        tokens, pos = [], 0
        while pos < len(self.text):
            if not (match := TOKEN.match(self.text, pos)):
                c = self.text[pos]
                what = {'"': "unterminated string", "'": "unterminated string", "`": "unterminated or empty `name`",
                        "=": "unexpected '=' (compare with ==)"}.get(c, f"unexpected {_line(repr(c))}")
                self.fail(what, pos)
            kind, value = match.lastgroup, match.group()
            if kind == "num":
                value = float(value) if re.search("[.eE]", value) else int(value)
                if not math.isfinite(value) or isinstance(value, int) and not -2**63 <= value < 2**63:
                    self.fail("number out of range", pos)
            elif kind == "str":
                escapes = re.finditer(r"\\(.)", value[1:-1], re.DOTALL)
                if bad := next((m for m in escapes if m[1] not in "\\\"'"), None):
                    self.fail("unknown escape in a string (only \\\\ \\\" \\')", pos + 1 + bad.start())
                value = re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.DOTALL)
            elif kind == "field":
                value = value[1:-1]
            elif kind == "name" and value.lower() in KEYWORDS:
                kind, value = "kw", value.lower()
            if kind != "space":
                tokens.append((kind, value, pos))
            pos = match.end()
        return [*tokens, ("end", None, len(self.text))]

    def peek(self, kind: str, value=None) -> bool:
        token = self.tokens[self.at]
        return token[0] == kind and (value is None or token[1] == value)

    def take(self, kind: str | None = None, value=None, what: str = ""):
        """The next token; when `kind` is given it must be that one, else a syntax error."""
        if kind and not self.peek(kind, value):
            self.fail(f"expected {what or repr(value)}", self.tokens[self.at][2])
        self.at += 1
        return self.tokens[self.at - 1]

    def where(self) -> Where:
        tree = self.chain("or")
        self.take("end", what="'and', 'or' or the end")
        if self.problem:
            self.fail(*self.problem)
        return Where(self.text, frozenset(self.fields), frozenset(self.query_fields), tree)

    def chain(self, word: str):
        """`a or b or ...` (of and-chains) or `a and b and ...` (of negations), flat."""
        parts = [self.chain("and") if word == "or" else self.negation()]
        while self.peek("kw", word):
            self.take()
            parts.append(self.chain("and") if word == "or" else self.negation())
        return parts[0] if len(parts) == 1 else (word, tuple(parts))

    def negation(self):
        if not (self.peek("kw", "not") or self.peek("op", "(")):
            return self.comparison()
        kind, _, pos = self.take()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"nested too deeply (more than {MAX_DEPTH} levels)", pos)
        node = ("not", self.negation()) if kind == "kw" else self.chain("or")
        if kind == "op":
            self.take("op", ")")
        self.depth -= 1
        return node

    def operand(self, what: str):
        kind, value, pos = self.take()
        tag = "field"
        if kind == "name" and value == "query" and self.peek("op", "."):
            self.take()
            tag, (kind, value, pos) = "query", self.take()
        if kind in ("name", "field"):
            return self.resolve(tag, value, pos)
        if tag == "query":
            self.fail("expected a field name after 'query.'", pos)
        if kind == "kw" and value in ("true", "false"):
            return ("lit", value == "true", "boolean", pos)
        if kind not in ("num", "str"):
            self.fail(f"expected {what}", pos)
        return ("lit", value, _kind(value), pos)

    def resolve(self, tag: str, name: str, pos: int):
        """A field reference with its kind (None when unknown: told after parsing)."""
        name = self.named.get(unicodedata.normalize("NFC", name), name)
        if name not in self.types:
            known = ", ".join(_show(n) for n in sorted(self.types)[:30]) + ", ..." * (len(self.types) > 30)
            self.later(f"unknown field {_line(repr(name[:SHOWN]))} in --where; fields: {known}")
            return (tag, name, None, pos)
        (self.fields if tag == "field" else self.query_fields).add(name)
        return (tag, name, KINDS[self.types[name]], pos)

    def comparison(self):
        left = self.operand("a field")
        kind, op, pos = self.tokens[self.at]
        if kind == "op" and op in COMPARE:
            self.take()
            right = self.operand("a value")
            if left[0] != "field":
                left, right, op = right, left, FLIP[op]
            self.check(left, op, right, pos)
            return ("cmp", left[1], left[2], op, right[:3])
        negated = self.peek("kw", "not") and bool(self.take())
        self.take("kw", "in", "'in'" if negated else "==, !=, <, <=, >, >=, in or not in")
        self.take("op", "[")
        values = []
        while not self.peek("op", "]"):
            if values:
                self.take("op", ",", "',' or ']'")
            kind, value, at = self.take()
            if kind not in ("num", "str") and not (kind == "kw" and value in ("true", "false")):
                self.fail("expected a value", at)
            values.append(value == "true" if kind == "kw" else value)
            self.check(left, "in", ("lit", values[-1], _kind(values[-1])), at)
        self.take()
        self.check(left, "in", None, pos)
        return ("in", left[1], left[2], tuple(values), negated)

    def check(self, left, op: str, right, pos: int):
        """One side a catalogue field; both sides of one kind; booleans only == / !=."""
        if left[0] != "field":
            return self.later("a comparison needs a catalogue field on one side", pos)
        if right is None or left[2] is None or right[2] is None:
            return None
        if left[2] != right[2]:
            other = f"a {right[2]}" if right[0] == "lit" else f"{'query.' * (right[0] == 'query')}{_show(right[1])} " \
                f"(a {right[2]})"
            return self.later(f"{_show(left[1])} is a {left[2]}, compared with {other}", pos)
        if left[2] == "boolean" and op not in ("==", "!=", "in"):
            return self.later(f"{_show(left[1])} is true/false: compare it with == or !=, not {op}", pos)
        return None
