"""The Search tab: a query (an upload, or a catalogue item clicked), the
catalogue, backbone and k, filters (filters.py) and result hygiene, the two
galleries side by side with 👍 / 👎 / Why? / Search with it under each
(feedback.py keeps what was liked), and the picture of why a result matches.
The events are wired in search_events.py."""

from dataclasses import dataclass

import gradio as gr

from retrieval.errors import LookalikeError
from retrieval.search.hygiene import Hygiene
from retrieval.search.limits import MAX_K
from retrieval.search.query import Query
from retrieval.search.service import Service
from ui import feedback, filters
from ui.edge import refusing, uploaded
from ui.format import SIDE_TITLES, caption, side_label

ACTIONS = {"like": "👍 More like it", "dislike": "👎 Less like it", "why": "Why?", "search": "Search with it"}


@dataclass
class SearchTab:
    """The tab's components and its state."""

    image: gr.Image
    catalogue: gr.Dropdown
    backbone: gr.Dropdown
    k: gr.Slider
    button: gr.Button
    examples: gr.Gallery
    galleries: dict        # side -> gr.Gallery
    note: gr.Markdown
    item: gr.State         # (catalogue, row) when the query is a catalogue item
    shown: gr.State        # rows of the results on show, per side
    example_rows: gr.State
    filters: filters.Filters
    hygiene: list          # min score, variety, collapse near-identical
    feedback: gr.State     # feedback.empty()'s shape: the liked and disliked examples
    in_play: list          # the liked and disliked examples' gallery, "Start over"
    actions: dict          # side -> {action: gr.Button} (ACTIONS)
    selected: gr.State     # side -> index of the result selected in its gallery
    why: gr.Image

    @property
    def query(self) -> list:
        return [self.catalogue, self.backbone, self.k]

    @property
    def inputs(self) -> list:
        """What a search reads (search_function's arguments, in order)."""
        return [self.image, *self.query, self.item, self.feedback, *self.hygiene, *self.filters.inputs]

    @property
    def results(self) -> list:
        """What a search writes; a new answer clears the selections and hides the last Why?."""
        return [*self.galleries.values(), self.note, self.shown, self.selected, self.why]


def examples_for(service: Service, catalogue: str) -> tuple:
    """(gallery of catalogue items offered as queries, their rows)."""
    examples = service.examples(catalogue)
    return [(str(e.thumbnail), e.label) for e in examples], [e.row for e in examples]


def query_column(service: Service, first: str) -> tuple:
    """The left column: the query image, catalogue, backbone, k, Search, catalogue items to click
    (and the items' rows)."""
    first_examples, rows = examples_for(service, first)
    image = gr.Image(label="Query image: upload, paste or snap one", sources=["upload", "clipboard", "webcam"],
                     type="filepath", height=260, elem_id="query")
    catalogue = gr.Dropdown(service.names(loaded_only=True), value=first, label="Catalogue")
    backbone = gr.Dropdown(service.backbones(first), value=service.backbones(first)[0], label="Backbone")
    k = gr.Slider(1, MAX_K, value=10, step=1, label="k (results per embedding)")
    button = gr.Button("Search", variant="primary")
    examples = gr.Gallery(first_examples, label="Or click a catalogue item", columns=3, height="auto",
                          fit_columns=False, allow_preview=False, elem_id="examples", elem_classes="results")
    return image, catalogue, backbone, k, button, examples, rows


def hygiene_controls() -> list:
    """Min score (0 = off), variety (0 = by score alone) and collapsing near-identical results."""
    with gr.Row(equal_height=True):
        return [gr.Slider(0, 1, value=0, step=0.01, label="Min score (0: off)", elem_id="min-score"),
                gr.Slider(0, 1, value=0, step=0.05, label="Variety (0: by score alone)", elem_id="variety"),
                gr.Checkbox(value=True, label="Collapse near-identical results", elem_id="dedup")]


def side_column(side: str) -> tuple:
    """One embedding's gallery and the buttons acting on its selected result."""
    gallery = gr.Gallery(label=SIDE_TITLES[side], columns=3, height="auto", fit_columns=False, allow_preview=False,
                         elem_id=side, elem_classes="results")
    with gr.Row():
        buttons = {action: gr.Button(text, size="sm", min_width=60, elem_id=f"{side}-{action}")
                   for action, text in ACTIONS.items()}
    return gallery, buttons


def layout(service: Service, first: str) -> SearchTab:
    """The tab's components (inside a gr.Tab)."""
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            image, catalogue, backbone, k, button, examples, rows = query_column(service, first)
        with gr.Column(scale=3):
            with gr.Accordion("Filters and result hygiene", open=True):
                where = filters.layout(service, first)
                hygiene = hygiene_controls()
            in_play = feedback.layout()
            gr.Markdown("Click a result to select it, then act on it with the buttons under its gallery.",
                        elem_classes="hint")
            with gr.Row():
                with gr.Column():
                    pretrained, pretrained_actions = side_column("pretrained")
                with gr.Column():
                    finetuned, finetuned_actions = side_column("finetuned")
                    note = gr.Markdown(elem_id="finetuned-note")
            why = gr.Image(label="Why?", type="pil", interactive=False, visible=False, height=420, elem_id="why")
    return SearchTab(image, catalogue, backbone, k, button, examples, {"pretrained": pretrained,
                     "finetuned": finetuned}, note, gr.State(None), gr.State({}),
                     gr.State(rows), where, hygiene, gr.State(feedback.empty(first)),
                     in_play, {"pretrained": pretrained_actions, "finetuned": finetuned_actions},
                     gr.State({}), why)


def current_query(service: Service, image, catalogue: str, item, liked: dict) -> Query | None:
    """The original query (the catalogue item, else the upload) plus the liked examples minus the
    disliked, or None when there is no query yet."""
    likes, dislikes = feedback.in_play(liked, catalogue)
    if item and item[0] == catalogue:
        return Query(items=[service.item_id(catalogue, item[1]), *likes], unlike_items=dislikes)
    if image is None:
        return None
    return Query(images=[uploaded(image)], items=likes, unlike_items=dislikes)


def search_function(service: Service):
    """Both galleries for the current query, filtered and tidied as the controls say; the catalogue
    item used as the query is shown apart and left out of the results."""
    where = filters.where_function(service)

    @refusing
    def search(image, catalogue, backbone, k, item, liked, min_score, variety, dedup, *filter_values):
        query = current_query(service, image, catalogue, item, liked)
        if query is None:
            return gr.Gallery(value=None), gr.Gallery(value=None), "", {}, {}, hidden_why()
        query.k, query.where = k, where(catalogue, filter_values)
        query.hygiene = Hygiene(min_score if min_score and min_score > 0 else None, variety, dedup)
        return render(service.answer(query, catalogue, backbone or None), catalogue)
    return search


def render(answer, catalogue: str) -> tuple:
    """`SearchTab.results` for an answer: galleries (selection cleared), the note, the rows shown."""
    outputs, shown = [], {"catalogue": catalogue}
    for side, title in SIDE_TITLES.items():
        results = answer.sides[side].results
        outputs.append(gr.Gallery(value=[(str(m.thumbnail), caption(m)) for m in results],
                                  label=side_label(title, answer.sides[side]), selected_index=None))
        shown[side] = [m.row for m in results]
    return *outputs, answer.sides["finetuned"].note or "", shown, {}, hidden_why()


def hidden_why() -> gr.Image:
    """A new answer hides the picture that explained the last one."""
    return gr.Image(value=None, visible=False)


def why_function(service: Service, side: str):
    """The picture of why the result selected in `side` matches the query (its first liked item or upload)."""
    @refusing
    def why(image, catalogue, backbone, item, liked, shown, selected):
        row = feedback.selected_row(shown, selected, side)
        query = current_query(service, image, catalogue, item, liked)
        if query is None:
            raise LookalikeError("no query: upload an image or click a catalogue item first")
        result_id = service.item_id(shown["catalogue"], row)
        picture = service.explanation(query, catalogue, side, result_id, backbone or None)
        return gr.Image(picture, label=f"Why {result_id}? ({SIDE_TITLES[side]})", visible=True)
    return why
