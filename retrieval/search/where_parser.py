"""The `--where` language's tokenizer and recursive-descent parser (where.py
has the language and what a parsed filter does): hostile text in, a small
tree out, never `eval`; the input's length and nesting are capped, and every
error is one short LookalikeError line naming the position or the field."""

import math
import re
import unicodedata

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

def one_line(text: str) -> str:
    """User text made safe to print on one line: no newlines or control characters."""
    return "".join(c if c.isprintable() else " " for c in text)


def shown_name(name: str) -> str:
    """A field name as the user would type it, shortened."""
    shown = name if re.fullmatch(r"[^\W\d]\w*", name) else f"`{name}`"
    return one_line(shown if len(shown) <= SHOWN else shown[:SHOWN] + "...")


def kind_of(value) -> str:
    return "boolean" if isinstance(value, bool) else "string" if isinstance(value, str) else "number"


def parse(text: str, types: dict) -> tuple:
    """(tree, catalogue fields read, query fields read) of `text` against `types`."""
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
        raise LookalikeError(f"--where: {what} at character {pos + 1}: {one_line(shown)}")

    def later(self, what: str, pos: int | None = None):
        self.problem = self.problem or (what, pos)

    def tokenize(self) -> list:
        tokens, pos = [], 0
        while pos < len(self.text):
            if not (match := TOKEN.match(self.text, pos)):
                c = self.text[pos]
                what = {'"': "unterminated string", "'": "unterminated string", "`": "unterminated or empty `name`",
                        "=": "unexpected '=' (compare with ==)"}.get(c, f"unexpected {one_line(repr(c))}")
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

    def where(self) -> tuple:
        tree = self.chain("or")
        self.take("end", what="'and', 'or' or the end")
        if self.problem:
            self.fail(*self.problem)
        return tree, frozenset(self.fields), frozenset(self.query_fields)

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
        return ("lit", value, kind_of(value), pos)

    def resolve(self, tag: str, name: str, pos: int):
        """A field reference with its kind (None when unknown: told after parsing)."""
        name = self.named.get(unicodedata.normalize("NFC", name), name)
        if name not in self.types:
            known = ", ".join(shown_name(n) for n in sorted(self.types)[:30]) + ", ..." * (len(self.types) > 30)
            self.later(f"unknown field {one_line(repr(name[:SHOWN]))} in --where; fields: {known}")
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
            self.check(left, "in", ("lit", values[-1], kind_of(values[-1])), at)
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
            named = f"{'query.' * (right[0] == 'query')}{shown_name(right[1])} (a {right[2]})" \
                if right[0] != "lit" else None
            other = named or f"a {right[2]}"
            return self.later(f"{shown_name(left[1])} is a {left[2]}, compared with {other}", pos)
        if left[2] == "boolean" and op not in ("==", "!=", "in"):
            return self.later(f"{shown_name(left[1])} is true/false: compare it with == or !=, not {op}", pos)
        return None
