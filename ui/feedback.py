"""👍 / 👎 on results. A session keeps the examples liked and disliked; the
query is the original (an upload or a catalogue item) plus the liked minus
the disliked (the service's relevance feedback), so a shopper steers the
results by pointing at them. The examples in play are shown, a click on one
removes it, and "Start over" drops them all. Kept per catalogue: another
catalogue's ids mean nothing here."""

import gradio as gr

from retrieval.errors import LookalikeError
from retrieval.search.query import MAX_EXAMPLES
from retrieval.search.service import Service

MARKS = {"liked": "👍", "disliked": "👎"}
NOT_SELECTED = "select a result first (click it), then the button under its gallery"


def empty(catalogue: str | None = None) -> dict:
    """No examples in play: {"catalogue", "liked": [[id, row], ...], "disliked": [...]}."""
    return {"catalogue": catalogue, "liked": [], "disliked": []}


def cleared(service: Service, catalogue: str | None) -> tuple:
    """No examples in play, and nothing shown of them: (feedback state, *shown)."""
    return empty(catalogue), *shown(service, None)


def _current(feedback: dict | None, catalogue: str) -> dict:
    return feedback if feedback and feedback.get("catalogue") == catalogue else empty(catalogue)


def in_play(feedback: dict | None, catalogue: str) -> tuple:
    """(liked ids, disliked ids) for a search of `catalogue`."""
    current = _current(feedback, catalogue)
    return [i for i, _ in current["liked"]], [i for i, _ in current["disliked"]]


def marked(feedback: dict | None, catalogue: str, kind: str, item_id: str, row: int) -> dict:
    """The feedback with one item liked or disliked (`kind`), out of the other list if it was there.
    The query's own example counts too, so the service's limit on examples is kept here."""
    current = _current(feedback, catalogue)
    if len(current["liked"]) + len(current["disliked"]) + 1 >= MAX_EXAMPLES:
        raise LookalikeError(f"at most {MAX_EXAMPLES - 1} liked and disliked examples: remove one first")
    other = "disliked" if kind == "liked" else "liked"
    return {"catalogue": catalogue, other: [e for e in current[other] if e[0] != item_id],
            kind: [*(e for e in current[kind] if e[0] != item_id), [item_id, row]]}


def removed(feedback: dict, index: int) -> dict:
    """The feedback without its `index`-th example in the shown order (liked, then disliked)."""
    liked, disliked = list(feedback["liked"]), list(feedback["disliked"])
    if 0 <= index < len(liked):
        liked.pop(index)
    elif 0 <= index - len(liked) < len(disliked):
        disliked.pop(index - len(liked))
    return {"catalogue": feedback["catalogue"], "liked": liked, "disliked": disliked}


def shown(service: Service, feedback: dict | None) -> tuple:
    """(the examples in play, each captioned 👍 or 👎 and its id; "Start over"), both hidden when there are none."""
    feedback = feedback or empty()
    entries = [(MARKS[kind], item_id, row) for kind in MARKS for item_id, row in feedback[kind]]
    return (gr.Gallery([(str(service.thumbnail(feedback["catalogue"], row)), f"{mark} {item_id}")
                        for mark, item_id, row in entries], visible=bool(entries), selected_index=None),
            gr.Button(visible=bool(entries)))


def selected_row(shown: dict | None, selected: dict | None, side: str) -> int:
    """The catalogue row of the result selected in a side's gallery."""
    index, rows = (selected or {}).get(side), (shown or {}).get(side) or []
    if index is None or not 0 <= index < len(rows):
        raise LookalikeError(NOT_SELECTED)
    return rows[index]


def layout() -> list:
    """[the examples-in-play gallery, the "Start over" button], in the tab's results column."""
    with gr.Row():
        examples = gr.Gallery(label="In play: 👍 liked and 👎 disliked (click one to remove it)", columns=8,
                              height="auto", fit_columns=False, allow_preview=False, visible=False,
                              elem_id="in-play", elem_classes="results", scale=5)
        start_over = gr.Button("Start over", size="sm", scale=1, min_width=100, visible=False, elem_id="start-over")
    return [examples, start_over]
