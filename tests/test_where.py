"""`--where`: the filter language against a brute-force evaluator, its errors, its caps, and
what it hands to Milvus. No model, no Milvus: fast."""

import math
import operator
import os

import numpy as np
import pyarrow as pa
import pytest

from retrieval.errors import LookalikeError
from retrieval.search.where import describe_fields, parse_where

TYPES = {"make": "string", "price": "float", "year": "integer", "in_stock": "boolean", "body style": "string",
         "année": "integer"}
KIND = {"make": "string", "body style": "string", "price": "number", "year": "number", "année": "number",
        "in_stock": "boolean"}
POOLS = {"make": ["BMW", "Audi", "Škoda", "Citroën", "東京モータース", 'Quote"Co', "Back\\slash", "O'Neil", ""],
         "body style": ["SUV", "van", "sedan", "coupé"], "in_stock": [True, False]}
OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _draw(rng, name):
    if name in POOLS:
        return POOLS[name][rng.integers(len(POOLS[name]))]
    if name == "price":
        return round(float(rng.uniform(0, 100)), 1)
    return int(rng.integers(1990, 2025))


def _rows(n=2000, seed=0):
    """Random metadata, ~10% missing per column (and ~3% NaN prices, which count as missing)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row = {name: None if rng.random() < 0.1 else _draw(rng, name) for name in TYPES}
        if row["price"] is not None and rng.random() < 0.03:
            row["price"] = math.nan
        rows.append(row)
    return rows


def _table(rows, chunks=3):
    """The rows as a pyarrow Table in a few chunks, as a catalogue read in parts would be."""
    arrow = {"string": pa.string(), "float": pa.float64(), "integer": pa.int64(), "boolean": pa.bool_()}
    table = pa.table({name: pa.array([r[name] for r in rows], arrow[kind]) for name, kind in TYPES.items()})
    step = -(-len(rows) // chunks)
    return pa.concat_tables([table.slice(i, step) for i in range(0, len(rows), step)])


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def _compare(a, op, b):
    """The documented semantics, in plain Python: a comparison with a missing value is False."""
    return not _missing(a) and not _missing(b) and OPS[op](a, b)


def _is_in(a, values, negated):
    return not _missing(a) and ((a in values) != negated)


def _name(rng, name):
    return f"`{name}`" if name == "body style" or (name == "make" and rng.random() < 0.2) else name


def _literal(rng, kind, value):
    """Text for a literal in varied spellings, and the value that text means."""
    if kind == "string":
        quote = '"' if rng.random() < 0.5 else "'"
        return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote, value
    if kind == "boolean":
        text = ["true", "True", "TRUE"][rng.integers(3)] if value else ["false", "FALSE"][rng.integers(2)]
        return text, value
    text = [repr(value), f"{value:e}", f"{float(value)}"][rng.integers(3)]
    return text, float(text) if any(c in text for c in ".eE") else int(text)


def _comparison(rng, query):
    """(text, predicate(row)) for one random comparison in any of the forms the language has."""
    name = list(TYPES)[rng.integers(len(TYPES))]
    kind, field = KIND[name], _name(rng, name)
    ops = ["==", "!="] if kind == "boolean" else list(OPS)
    op = ops[rng.integers(len(ops))]
    same_kind = [other for other in TYPES if KIND[other] == kind and other != name]
    form = ["lit", "lit", "lit left", "query", "query left", "field", "in", "not in"][rng.integers(8)]
    if form == "field" and same_kind:
        other = same_kind[rng.integers(len(same_kind))]
        return f"{field} {op} {_name(rng, other)}", lambda r: _compare(r[name], op, r[other])
    if form.startswith("query"):
        text, value = f"query.{_name(rng, name)}", query[name]
    elif form.endswith("in"):
        pairs = [_literal(rng, kind, _draw(rng, name)) for _ in range(rng.integers(0, 4))]
        texts, values = [t for t, _ in pairs], [v for _, v in pairs]
        negated = form == "not in"
        return (f"{field} {form} [{', '.join(texts)}]", lambda r: _is_in(r[name], values, negated))
    else:
        text, value = _literal(rng, kind, _draw(rng, name) if name != "price" else float(rng.uniform(-5, 105)))
    if form.endswith("left"):
        return f"{text} {FLIP[op]} {field}", lambda r: _compare(r[name], op, value)
    return f"{field} {op} {text}", lambda r: _compare(r[name], op, value)


def _expression(rng, query, depth=0):
    """(text, predicate) for `or` of `and`s of `not`s of comparisons or parentheses: the grammar
    itself, so the text's precedence and the predicate's agree by construction."""

    def negation():
        if rng.random() < 0.2:
            text, fn = negation()
            return f"not {text}", lambda r: not fn(r)
        if depth < 3 and rng.random() < 0.25:
            text, fn = _expression(rng, query, depth + 1)
            return f"({text})", fn
        return _comparison(rng, query)

    def both():
        parts = [negation() for _ in range(rng.integers(1, 4))]
        return " and ".join(t for t, _ in parts), lambda r: all(fn(r) for _, fn in parts)

    parts = [both() for _ in range(rng.integers(1, 3))]
    return " or ".join(t for t, _ in parts), lambda r: any(fn(r) for _, fn in parts)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_matches_brute_force_on_random_expressions(seed):
    rows = _rows(seed=seed)
    table = _table(rows)
    rng = np.random.default_rng(100 + seed)
    query = {name: _draw(rng, name) for name in TYPES}
    fractions = []
    for _ in range(60):
        text, fn = _expression(rng, query)
        where = parse_where(text, TYPES)
        mask = where.mask(table, query)
        expected = np.array([fn(r) for r in rows])
        assert mask.dtype == bool and mask.shape == (len(rows),)
        assert np.array_equal(mask, expected), (text, np.flatnonzero(mask != expected)[:5])
        fractions.append(mask.mean())
        # what goes to Milvus means the same: read back (backticked names are valid here too)
        again = parse_where(where.to_milvus(query, field=lambda n: f"`{n}`"), TYPES)
        assert np.array_equal(again.mask(table), mask), text
    fractions = np.array(fractions)  # the draw covers empty, narrow, middling and near-full selections
    assert (fractions == 0).any() and ((fractions > 0) & (fractions < 0.1)).any()
    assert ((fractions > 0.3) & (fractions < 0.7)).any() and (fractions > 0.9).any()


@pytest.mark.parametrize("quantile", [0.01, 0.1, 0.5, 0.9, 0.99])
def test_selectivity_of_a_threshold(quantile):
    rows = _rows(seed=7)
    prices = [r["price"] for r in rows if not _missing(r["price"])]
    cut = float(np.quantile(prices, quantile))
    mask = parse_where(f"price <= {cut!r}", TYPES).mask(_table(rows))
    assert mask.sum() == sum(p <= cut for p in prices)
    assert mask.sum() == pytest.approx(quantile * len(prices), abs=0.02 * len(prices) + 2)


def test_missing_values_fail_every_comparison_and_not_negates():
    table = pa.table({"price": pa.array([3.0, None, math.nan, 5.0]), "make": pa.array(["a", None, "b", "c"])})
    types = {"price": "float", "make": "string"}

    def rows(text):
        return np.flatnonzero(parse_where(text, types).mask(table)).tolist()

    assert rows("price != 3") == [3]  # missing and NaN prices are not "not 3"
    assert rows("not (price == 3)") == [1, 2, 3]  # but not (price == 3) keeps them
    assert rows("price < 10") == [0, 3] and rows("not price < 10") == [1, 2]
    assert rows("make not in ['a']") == [2, 3] and rows("not make in ['a']") == [1, 2, 3]
    assert rows("make in []") == [] and rows("make not in []") == [0, 2, 3]
    assert rows("price == price") == [0, 3] and rows("price != price") == []
    assert rows("price != 3 or make != 'a'") == [2, 3]


def test_precedence_not_and_or():
    table = pa.table({"a": [1, 1, 0, 0, 1], "b": [1, 0, 1, 0, 0], "c": [0, 1, 1, 1, 1]})
    types = dict.fromkeys("abc", "integer")

    def rows(text):
        return np.flatnonzero(parse_where(text, types).mask(table)).tolist()

    assert rows("a == 1 or b == 1 and c == 1") == [0, 1, 2, 4]
    assert rows("(a == 1 or b == 1) and c == 1") == [1, 2, 4]
    assert rows("not a == 1 and b == 1") == [2]
    assert rows("not (a == 1 and b == 1)") == [1, 2, 3, 4]
    assert rows("a == 1 AND NOT b == 1 Or c == 0") == [0, 1, 4]


def test_integers_and_floats_compare_freely():
    table = pa.table({"year": pa.array([2005, 2006, None]), "price": pa.array([1000.0, 2.5, -2.5])})
    types = {"year": "integer", "price": "float"}

    def rows(text):
        return np.flatnonzero(parse_where(text, types).mask(table)).tolist()

    assert rows("year == 2005.0") == [0] and rows("year < 2005.5") == [0]
    assert rows("year in [2005.0, 2006.5]") == [0] and rows("year not in [2.0065e3, 2006]") == [0]
    assert rows("price == 1e3") == [0] and rows("price == 1000") == [0] and rows("price >= -2.5") == [0, 1, 2]
    assert rows("price in [1000, -2.5]") == [0, 2] and rows("-2.5 == price") == [2]
    assert rows("price < year") == [0, 1]
    big = pa.table({"year": pa.array([2**62 + 1, 3]), "price": [2.5411742576747448e16, 1.0]})  # past 2**53
    assert parse_where("price == 25411742576747447 and year > 2.5e0", types).mask(big).tolist() == [True, False]
    assert parse_where("price in [25411742576747447]", types).mask(big).tolist() == [True, False]
    assert parse_where("year == 4611686018427387905 and year > price", types).mask(big).tolist() == [True, False]


def test_columns_from_numpy_and_odd_arrow_layouts():
    types = {"price": "float", "year": "integer", "make": "string", "ok": "boolean", "gone": "string"}
    columns = {"price": np.array([1.0, np.nan, 3.0]), "year": np.array([2001.0, np.nan, 2003.0]),  # ints as floats
               "make": np.array(["x", None, "é"], dtype=object), "ok": np.array([True, False, True]),
               "gone": pa.nulls(3)}
    assert parse_where("price >= 1 and year > 2000", types).mask(columns).tolist() == [True, False, True]
    assert parse_where("make != 'x' and ok == true", types).mask(columns).tolist() == [False, False, True]
    assert parse_where("gone == 'a' or gone != 'a'", types).mask(columns).tolist() == [False] * 3
    coded = pa.table({"make": pa.array(["x", None, "é"]).dictionary_encode(), "year": pa.array([1, 2, 3], pa.int8())})
    assert parse_where("make in ['é'] or year == 1", types).mask(coded).tolist() == [True, False, True]
    empty = parse_where("make == 'x'", types).mask(pa.table({"make": pa.array([], pa.string())}))
    assert empty.dtype == bool and empty.shape == (0,)
    with pytest.raises(LookalikeError, match="column make holds int64, not the string"):
        parse_where("make == 'x'", types).mask({"make": np.array([1, 2])})
    with pytest.raises(LookalikeError, match="has no column year"):
        parse_where("year == 1", types).mask({"make": np.array(["a"])})


ERRORS = [
    ("colour == 'red'", "unknown field 'colour' in --where; fields: année, `body style`, in_stock, make, price, year"),
    ("price == \"cheap\"", "price is a number, compared with a string"),
    ("make == query.year", "make is a string, compared with query.year (a number)"),
    ("year == make", "year is a number, compared with make (a string)"),
    ("make in ['a', 3]", "make is a string, compared with a number"),
    ("in_stock > true", "in_stock is true/false: compare it with == or !="),
    ("price > 3 and make == ", "--where: expected a value at character 23: price > 3 and make == ▲"),
    ("make == 'Audi", "unterminated string at character 9"),
    ("`body style == 'SUV'", "unterminated or empty `name`"),
    ("`` == 1", "unterminated or empty `name`"),
    ("make = 'a'", "unexpected '=' (compare with ==) at character 6"),
    ("1 == 1", "a comparison needs a catalogue field on one side"),
    ("query.make == 'a'", "a comparison needs a catalogue field on one side"),
    ("'a' in []", "a comparison needs a catalogue field on one side"),
    ("make == 'a\\n'", "unknown escape in a string"),
    ("make in ['a',]", "expected a value at character 14"),
    ("make in ['a' 'b']", "expected ',' or ']'"),
    ("make in 'a'", "expected '['"),
    ("(make == 'a'", "expected ')'"),
    ("make == 'a')", "expected 'and', 'or' or the end at character 12"),
    ("make not == 'a'", "expected 'in' at character 10"),
    ("make", "expected ==, !=, <, <=, >, >=, in or not in"),
    ("== 'a'", "expected a field at character 1"),
    ("query.5 == make", "--where: expected"),
    ("year > 99999999999999999999", "number out of range"),
    ("price > 1e999", "number out of range"),
    ("   ", "--where is empty"),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS)
def test_errors_are_one_short_line_naming_the_problem(text, expected):
    with pytest.raises(LookalikeError) as caught:
        parse_where(text, TYPES)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and len(message) < 160


def test_a_syntax_error_is_told_before_an_unknown_field():
    with pytest.raises(LookalikeError, match="expected ==") as caught:
        parse_where("colour == 1 and __import__('os')", TYPES)
    assert "unknown field" not in str(caught.value)


INJECTIONS = [
    ("__import__('os').system('x')", "expected ==, !=, <, <=, >, >=, in or not in at character 11"),
    ("make == 'a' or 1==1; drop", "unexpected ';' at character 20"),
    ("make == 'a' -- comment", "unexpected '-'"),
    ("make == 'a' || true", "unexpected '|'"),
    ("make == 'a' && true", "unexpected '&'"),
    ("make == eval('1')", "expected 'and', 'or' or the end"),
    ("make == 'a' or `make` == `make", "unterminated or empty `name`"),
    ("make.__class__ == 'a'", "expected ==, !="),
    ("make == {x}", "unexpected '{'"),
    ("make == \"a\" or \"", "unterminated string"),
]


@pytest.mark.parametrize(("text", "expected"), INJECTIONS)
def test_injection_attempts_are_syntax_errors(text, expected, monkeypatch):
    monkeypatch.setattr(os, "system", lambda *_: pytest.fail("ran code"))
    with pytest.raises(LookalikeError, match="^--where: ") as caught:
        parse_where(text, TYPES)
    assert expected in str(caught.value)


def test_mangled_expressions_only_ever_raise_lookalike_error():
    rows = _rows(n=50, seed=3)
    table, rng = _table(rows), np.random.default_rng(9)
    query = {name: _draw(rng, name) for name in TYPES}
    junk = [*"()[],.'\"`\\=!<>-+;{}é \n09eE", " and ", " or ", " not ", " in ", "query.", "9" * 20, "1e999"]
    for _ in range(1500):
        text = list(_expression(rng, query)[0])
        for _ in range(rng.integers(1, 4)):
            at = rng.integers(len(text) + 1)
            text[at:at + rng.integers(0, 3)] = [junk[rng.integers(len(junk))]] * rng.integers(0, 2)
        try:
            where = parse_where("".join(text), TYPES)
        except LookalikeError as error:
            assert "\n" not in str(error) and len(str(error)) < 160
            continue
        assert where.mask(table, query).shape == (len(rows),)
        where.to_milvus(query, field=lambda n: f"`{n}`")


def test_quotes_and_backticks_stay_literal():
    table = pa.table({"make": ['a" or make != "a', "a", "b\\", "`make`"]})
    types = {"make": "string"}
    breakout = parse_where('make == "a\\" or make != \\"a"', types)  # one string literal, quotes and all
    assert breakout.fields == {"make"} and breakout.mask(table).tolist() == [True, False, False, False]
    assert breakout.to_milvus() == 'make == "a\\" or make != \\"a"'
    assert parse_where("make == 'b\\\\'", types).mask(table).tolist() == [False, False, True, False]
    assert parse_where("`make` == '`make`'", types).mask(table).tolist() == [False, False, False, True]
    with pytest.raises(LookalikeError, match="unknown field '__import__\\(\"os\"\\)'"):
        parse_where('`__import__("os")` == 1', types)
    with pytest.raises(LookalikeError, match="unknown field 'make == \"a\" or 1'"):
        parse_where('`make == "a" or 1` == 1', types)


def test_non_ascii_values_and_field_names():
    table = pa.table({"marque": ["Škoda", "Citroën", "東京", None], "année": [2001, 2002, 2003, 2004],
                      "prix net": [1.0, 2.0, 3.0, 4.0]})
    types = {"marque": "string", "année": "integer", "prix net": "float"}

    def rows(text):
        return np.flatnonzero(parse_where(text, types).mask(table)).tolist()

    assert rows("marque in ['Škoda', \"東京\"]") == [0, 2] and rows("marque > 'Z'") == [0, 2]
    assert rows("année >= 2003") == [2, 3] and rows("`prix net` < 2.5 and marque == 'Citroën'") == [1]
    assert rows("anne\u0301e == 2001") == [0]  # a decomposed é still names the field
    milvus = parse_where("marque == '東京'", types).to_milvus(field=lambda n: f'meta["{n}"]')
    assert milvus == 'meta["marque"] == "東京"'


def test_query_fields_resolve_and_fail_clearly():
    table = pa.table({"make": ["BMW", "Audi", None], "price": [10.0, 30.0, 20.0], "body style": ["SUV", "SUV", "van"]})
    types = {"make": "string", "price": "float", "body style": "string"}
    where = parse_where("make != query.make and price <= query.price", types)
    assert where.uses_query and where.fields == {"make", "price"}
    assert where.mask(table, {"make": "Audi", "price": np.float64(20)}).tolist() == [True, False, False]
    assert parse_where("`body style` == query.`body style`", types).mask(table, {"body style": "van"}).tolist() == [
        False, False, True]
    assert not parse_where("make == 'a'", types).uses_query
    with pytest.raises(LookalikeError, match="^query.make needs a catalogue item as the query$"):
        where.mask(table)
    with pytest.raises(LookalikeError, match="^the query item has no make$"):
        where.mask(table, {"make": None, "price": 1.0})
    with pytest.raises(LookalikeError, match="^the query item has no price$"):
        where.mask(table, {"make": "a", "price": math.nan})
    with pytest.raises(LookalikeError, match="^the query item has no price$"):
        where.to_milvus({"make": "a"})
    with pytest.raises(LookalikeError, match="the query item's price is not a number"):
        where.to_milvus({"make": "a", "price": "1 or true"})
    with pytest.raises(LookalikeError, match="unknown field 'colour'"):
        parse_where("make == query.colour", types)


def test_length_and_depth_caps():
    types = {"make": "string"}
    longest = "make == '" + "x" * (2000 - 10) + "'"
    assert len(longest) == 2000 and parse_where(longest, types).fields == {"make"}
    with pytest.raises(LookalikeError, match="--where is too long: 2001 characters, at most 2000"):
        parse_where(longest + " ", types)
    assert parse_where("(" * 32 + "make == 'a'" + ")" * 32, types)
    assert parse_where("not " * 16 + "(" * 16 + "make == 'a'" + ")" * 16, types)
    for deep in ["(" * 33 + "make == 'a'" + ")" * 33, "not " * 33 + "make == 'a'", "(" * 1990, "not " * 490]:
        with pytest.raises(LookalikeError, match=r"nested too deeply \(more than 32 levels\)"):
            parse_where(deep, types)
    flat = " or ".join(["make == 'a'"] * 130)  # long but flat: no recursion per term
    assert len(flat) < 2000 and parse_where(flat, types).mask({"make": pa.array(["a", "b"])}).tolist() == [True, False]


def test_messages_echo_little_of_the_input():
    tail = "make == '" + "A" * 1500 + "' and " + "B" * 300 + " =="
    for text in [tail, "`" + "C" * 500 + "` == 1", "make == 'a' and\n" + "D" * 100 + "\r\n== ;"]:
        with pytest.raises(LookalikeError) as caught:
            parse_where(text, {"make": "string"})
        message = str(caught.value)
        assert len(message) < 160 and "\n" not in message and "\r" not in message
        assert not any(letter * 61 in message for letter in "ABCD")


MILVUS = [
    ("make == \"BMW\" and (price < 3 or year >= 2010)", 'make == "BMW" and (price < 3 or year >= 2010)'),
    ("make == 'a' or price < 3 and year > 1", 'make == "a" or price < 3 and year > 1'),
    ("not make in ['a', \"b\"] OR in_stock == TRUE", 'not (make in ["a", "b"]) or in_stock == true'),
    ("not (make == 'a' or make == 'b')", 'not (make == "a" or make == "b")'),
    ("2005 < year and false != in_stock", "year > 2005 and in_stock != false"),
    ("price >= -2.5e3 and year in [1, 2.0]", "price >= -2500.0 and year in [1, 2.0]"),
    ("make not in [] and make in []", "make not in [] and make in []"),
    ("price <= year", "price <= year"),
    ("make == 'say \"hi\" \\\\ bye'", 'make == "say \\"hi\\" \\\\ bye"'),
    ("make == 'tab\tnew\nline\x00'", 'make == "tab\\tnew\\nline\\U00000000"'),
    ("make == '{x} $meta'", 'make == "{x} $meta"'),
]


@pytest.mark.parametrize(("text", "expected"), MILVUS)
def test_to_milvus(text, expected):
    assert parse_where(text, TYPES).to_milvus() == expected


def test_to_milvus_substitutes_the_query_and_names_fields_only_through_field():
    where = parse_where("make != query.make and `body style` == query.`body style` and price <= query.price"
                        " and price < year", TYPES)
    query = {"make": 'x" or true or "', "body style": "SUV", "price": np.float64(3.5)}
    assert where.to_milvus(query, field=lambda n: f'meta["{n}"]') == (
        'meta["make"] != "x\\" or true or \\"" and meta["body style"] == "SUV" and meta["price"] <= 3.5'
        ' and meta["price"] < meta["year"]')
    named = []
    text = where.to_milvus(query, field=lambda n: named.append(n) or f"F{len(named)}")
    assert named == ["make", "body style", "price", "price", "year"] and text.endswith(" and F4 < F5")
    assert not any(name in text for name in ["make", "body", "price", "year"])
    with pytest.raises(LookalikeError, match="field `body style` can't be named in a Milvus filter"):
        where.to_milvus(query)
    for name in ["année", "in", "like"]:
        with pytest.raises(LookalikeError, match="map it with field="):
            parse_where(f"`{name}` == 1", {name: "integer"}).to_milvus()


def test_where_is_a_small_value_and_fields_are_described():
    where = parse_where("price < 3 or year > query.année", TYPES)
    assert (where.text, where.fields, where.uses_query) == ("price < 3 or year > query.année", {"price", "year"}, True)
    assert where == parse_where("price < 3 or year > query.année", TYPES) and hash(where)
    with pytest.raises(AttributeError):
        where.text = "x"
    assert describe_fields({"make": "string", "body style": "string", "year": "integer"}) == (
        "`body style` (string), make (string), year (integer)")
    with pytest.raises(ValueError, match="field types must be among"):
        parse_where("a == 1", {"a": "int"})
