"""The Search tab's filters: a `--where` box with a hint of the catalogue's
fields, and a control per field the service offers (a multi-select for a
string field with few values, a from/to pair for a number field), combined
with `and` into the one `where` string a Query takes. The controls are a
fixed set of slots relabelled per catalogue, so every search has the same
inputs whatever the catalogue, and no component is made or lost mid-session."""

import math
import re
from dataclasses import dataclass

import gradio as gr

from retrieval.errors import LookalikeError
from retrieval.search.service import Service
from retrieval.search.where import KEYWORDS, describe_fields

MAX_CHOICES, MAX_RANGES = 6, 4  # more fields than slots are filtered through the box
PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BOOLEAN_CHOICES = {"true": True, "false": False}


@dataclass
class Plan:
    """Which field each slot shows: choices [(name, type, values)], ranges [(name, type, [low, high])]."""

    choices: list
    ranges: list


def plan(fields: dict) -> Plan:
    """Slots for `service.fields(...)`. Item ids are no facet, and a name with a backtick can't be
    written in a filter: neither gets a slot (the box still reads ids)."""
    usable = {name: f for name, f in fields.items() if "`" not in name and name != "id"}
    choices = [(name, f["type"], f["values"]) for name, f in usable.items() if "values" in f]
    ranges = [(name, f["type"], f["range"]) for name, f in usable.items() if "range" in f]
    return Plan(choices[:MAX_CHOICES], ranges[:MAX_RANGES])


def field_ref(name: str) -> str:
    """A field as the filter language reads it: backticks unless a plain name that is no keyword."""
    return name if PLAIN_NAME.fullmatch(name) and name.lower() not in KEYWORDS else f"`{name}`"


def literal(value) -> str:
    """A value as a filter literal; strings double-quoted with `\\` and `"` escaped, so none breaks out."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if not math.isfinite(value):
        raise LookalikeError(f"a filter bound must be a finite number, not {value}")
    return repr(int(value) if float(value).is_integer() else float(value))


def choice_clause(name: str, kind: str, picked: list) -> str:
    """`brand in ["A", "B"]`; booleans compare only with ==, so `(f == true or f == false)`."""
    if kind == "boolean":
        return "(" + " or ".join(f"{field_ref(name)} == {literal(BOOLEAN_CHOICES[p])}" for p in picked) + ")"
    return f"{field_ref(name)} in [{', '.join(literal(p) for p in picked)}]"


def where_string(text: str | None, slots: Plan, picked: list, bounds: list) -> str | None:
    """The box (in parentheses, so its `or` stays inside) and every set control, joined by `and`.
    `picked`: each choice slot's selection; `bounds`: each range slot's (from, to), None when empty."""
    parts = [f"({text.strip()})"] if text and text.strip() else []
    for (name, kind, _), chosen in zip(slots.choices, picked):
        if chosen:
            parts.append(choice_clause(name, kind, chosen))
    for (name, _, _), (low, high) in zip(slots.ranges, bounds):
        for op, typed, end in ((">=", low, "from"), ("<=", high, "to")):
            if (value := number(typed, f"{name} {end}")) is not None:
                parts.append(f"{field_ref(name)} {op} {literal(value)}")
    return " and ".join(parts) or None


def number(value, what: str):
    """A bound as typed (text, or a number): None when empty; anything else not a number is refused."""
    if value is None or isinstance(value, int | float):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise LookalikeError(f"{what}: {text[:20]!r} is not a number") from None


def hint(service: Service, catalogue: str) -> str:
    """The box's help: the catalogue's fields (every one, not only those with controls) and an example."""
    served = service.get(catalogue).catalogue
    fields = served.metadata_fields if served is not None else {}
    if not fields:
        return "This catalogue has no metadata to filter on."
    numbers = [n for n, kind in fields.items() if kind in ("integer", "float")]
    strings = [n for n, kind in fields.items() if kind == "string" and n != "id"]
    example = [f"{field_ref(n)} != query.{field_ref(n)}" for n in strings[:1]] + \
              [f"{field_ref(n)} >= 10" for n in numbers[:1]]
    return (f"Fields: {describe_fields(fields)}. `query.FIELD` is the query item's own value"
            + (f", e.g. `{' and '.join(example)}`." if example else "."))


@dataclass
class Filters:
    """The components: the box, its hint, the choice slots and the (from, to) range slots."""

    box: gr.Textbox
    hint: gr.Markdown
    choices: list
    ranges: list

    @property
    def inputs(self) -> list:
        """What a search reads, in the order `where` takes it."""
        return [self.box, *self.choices, *(n for pair in self.ranges for n in pair)]

    @property
    def outputs(self) -> list:
        """What a catalogue change relabels."""
        return [self.hint, *self.choices, *(n for pair in self.ranges for n in pair)]


def _choice(slot) -> dict:
    """A choice slot's settings for one field (name, type, values), or hidden when None."""
    if slot is None:
        return {"choices": [], "value": [], "visible": False}
    name, kind, values = slot
    shown = [("true" if v else "false") if kind == "boolean" else v for v in values]
    return {"choices": shown, "value": [], "label": name, "visible": True}


def _range(slot) -> list:
    """A range slot's (from, to) settings for one field (name, type, [low, high]), or hidden when None."""
    if slot is None:
        return [{"value": "", "visible": False}] * 2
    name, _, (low, high) = slot
    return [{"value": "", "label": f"{name} from", "placeholder": f"{low:g}", "visible": True},
            {"value": "", "label": f"{name} to", "placeholder": f"{high:g}", "visible": True}]


def _slots(service: Service, catalogue: str) -> tuple:
    """(choice settings, range settings) of every slot, for a catalogue."""
    slots = plan(service.fields(catalogue))
    return ([_choice(slots.choices[i] if i < len(slots.choices) else None) for i in range(MAX_CHOICES)],
            [_range(slots.ranges[i] if i < len(slots.ranges) else None) for i in range(MAX_RANGES)])


def layout(service: Service, first: str) -> Filters:
    """The filter box and the slots, set for the first catalogue (inside the Search tab)."""
    box = gr.Textbox(label="Filter", placeholder="e.g. price < 30000 and make != query.make", max_lines=3,
                     elem_id="where", info="Applied to both galleries; Enter searches.")
    note = gr.Markdown(hint(service, first), elem_id="where-hint", elem_classes="hint")
    choices, ranges = _slots(service, first)
    with gr.Row():  # one row that wraps: hidden slots take no room
        choices = [gr.Dropdown(multiselect=True, min_width=160, elem_id=f"filter-choice-{i}", **settings)
                   for i, settings in enumerate(choices)]
        ranges = [(gr.Textbox(min_width=100, max_lines=1, elem_id=f"filter-from-{i}", **low),
                   gr.Textbox(min_width=100, max_lines=1, elem_id=f"filter-to-{i}", **high))
                  for i, (low, high) in enumerate(ranges)]
    return Filters(box, note, choices, ranges)


def relabel(service: Service, catalogue: str) -> list:
    """Updates of `Filters.outputs` for a catalogue: its hint, its fields in the slots (emptied), the rest hidden."""
    choices, ranges = _slots(service, catalogue)
    return [hint(service, catalogue), *(gr.Dropdown(**c) for c in choices),
            *(gr.Textbox(**settings) for pair in ranges for settings in pair)]


def where_function(service: Service):
    """where(catalogue, values of Filters.inputs) -> the `where` string; each catalogue's slots planned once."""
    plans = {}

    def where(catalogue: str, values) -> str | None:
        if catalogue not in plans:
            plans[catalogue] = plan(service.fields(catalogue))
        text, rest = values[0], list(values[1:])
        picked, numbers = rest[:MAX_CHOICES], rest[MAX_CHOICES:]
        return where_string(text, plans[catalogue], picked, list(zip(numbers[::2], numbers[1::2])))
    return where

