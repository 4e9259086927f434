"""A catalogue's metadata fields as the page offers them for filtering: a
string field with few values as a choice of those values, a number field
as a range."""

import pyarrow.compute as pc

from retrieval.data.catalogue import Catalogue

FEW_VALUES = 40  # a string field with more distinct values gets only the filter box


def field_summary(catalogue: Catalogue) -> dict:
    """{field: {"type", "values" or "range"}} (fields with neither are left out)."""
    table, out = catalogue.metadata_table, {}
    for name, kind in catalogue.metadata_fields.items():
        column = table[name]
        if kind == "string":
            values = pc.unique(column.drop_null())
            if 0 < len(values) <= FEW_VALUES:
                out[name] = {"type": kind, "values": sorted(values.to_pylist())}
        elif kind in ("integer", "float"):
            low_high = pc.min_max(column)
            if low_high["min"].is_valid:
                out[name] = {"type": kind, "range": [low_high["min"].as_py(), low_high["max"].as_py()]}
        elif kind == "boolean":
            out[name] = {"type": kind, "values": [True, False]}
    return out
