"""The one table renderer: every table of metrics (the CLI's, model cards,
REPORT.md, the app's metrics tab) is a list of rows turned into markdown or
aligned plain text here, so they all show the same columns the same way."""

METRIC_KEYS = ("recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8", "map_at_r")  # shown in this order
METRIC_TITLES = ("R@1", "R@2", "R@4", "R@8", "MAP@R")


def table(headers, rows, style: str = "markdown", align=None) -> str:
    """`rows` of cells (strings) under `headers`; `align`: per column "l" or
    "r" (default: the first column left, the others right)."""
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    if style == "markdown":
        rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
        return "\n".join(["| " + " | ".join(headers) + " |", rule] + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) if a == "l" else c.rjust(w)  # noqa: E731
                                   for c, w, a in zip(cells, widths, align)).rstrip()
    return "\n".join(line(r) for r in [headers, *rows])


def metrics_table(rows, style: str = "markdown", digits: int = 3) -> str:
    """(embedding name, metrics dict) rows -> R@1/2/4/8 and MAP@R columns,
    `digits` decimals; a row without metrics is left out."""
    return table(["embedding", *METRIC_TITLES],
                 [[name, *(f"{m[k]:.{digits}f}" for k in METRIC_KEYS)] for name, m in rows if m], style)
