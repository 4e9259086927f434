"""The Search tab: a query (an upload, or a catalogue item clicked), the
catalogue, backbone and k, and the two galleries side by side."""

from dataclasses import dataclass

import gradio as gr

from retrieval.errors import LookalikeError
from retrieval.search.limits import MAX_K
from retrieval.search.query import Query
from retrieval.search.service import Service
from ui.edge import refused, uploaded
from ui.format import SIDE_TITLES, caption, side_label


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

    @property
    def query(self) -> list:
        return [self.catalogue, self.backbone, self.k]

    @property
    def results(self) -> list:
        return [*self.galleries.values(), self.note, self.shown]


def examples_for(service: Service, catalogue: str) -> tuple:
    """(gallery of catalogue items offered as queries, their rows)."""
    examples = service.examples(catalogue)
    return [(str(e.thumbnail), e.label) for e in examples], [e.row for e in examples]


def layout(service: Service, first: str) -> SearchTab:
    """The tab's components (inside a gr.Tab)."""
    first_examples, first_rows = examples_for(service, first)
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(label="Query image: upload, paste or snap one", sources=["upload", "clipboard", "webcam"],
                             type="filepath", height=260, elem_id="query")
            catalogue = gr.Dropdown(service.names(loaded_only=True), value=first, label="Catalogue")
            backbone = gr.Dropdown(service.backbones(first), value=service.backbones(first)[0], label="Backbone")
            k = gr.Slider(1, MAX_K, value=10, step=1, label="k (results per embedding)")
            button = gr.Button("Search", variant="primary")
            examples = gr.Gallery(first_examples, label="Or click a catalogue item", columns=3, allow_preview=False,
                                  elem_id="examples", elem_classes="results")
        with gr.Column(scale=3), gr.Row():
            pretrained = gr.Gallery(label=SIDE_TITLES["pretrained"], columns=3, height="auto", allow_preview=False,
                                    elem_id="pretrained", elem_classes="results")
            with gr.Column():
                finetuned = gr.Gallery(label=SIDE_TITLES["finetuned"], columns=3, height="auto",
                                       allow_preview=False, elem_id="finetuned", elem_classes="results")
                note = gr.Markdown(elem_id="finetuned-note")
    return SearchTab(image, catalogue, backbone, k, button, examples, {"pretrained": pretrained,
                     "finetuned": finetuned}, note, gr.State(None), gr.State({}), gr.State(first_rows))


def search_function(service: Service):
    """Both galleries for a query; `item` = (catalogue, row) when the query is
    a catalogue item (shown apart, left out of the results)."""
    def search(image, catalogue, backbone, k, item):
        query_row = item[1] if item and item[0] == catalogue else None
        if image is None and query_row is None:
            return gr.Gallery(value=None), gr.Gallery(value=None), "", {}
        try:
            query = Query(items=[service.item_id(catalogue, query_row)]) if query_row is not None \
                else Query(images=[uploaded(image)])
            query.k = k
            answer = service.answer(query, catalogue, backbone or None)
        except LookalikeError as e:
            raise refused(e) from e
        outputs, shown = [], {"catalogue": catalogue}
        for side, title in SIDE_TITLES.items():
            results = answer.sides[side].results
            outputs.append(gr.Gallery(value=[(str(m.thumbnail), caption(m)) for m in results],
                                      label=side_label(title, answer.sides[side])))
            shown[side] = [m.row for m in results]
        return *outputs, answer.sides["finetuned"].note or "", shown
    return search


def wire(tab: SearchTab, service: Service):
    """The tab's events: searching, changing catalogue, clicking an item or a result."""
    search = search_function(service)
    private = {"api_visibility": "private"}
    inputs = [tab.image, *tab.query, tab.item]

    def search_item(catalogue, backbone, k, item):
        return (str(service.thumbnail(catalogue, item[1])), item, *search(None, catalogue, backbone, k, item))

    def change_catalogue(name):
        gallery, rows = examples_for(service, name)
        choices = service.backbones(name)
        return gr.Dropdown(choices, value=choices[0]), gr.Gallery(gallery), rows

    def pick_example(rows, name, evt: gr.SelectData):
        return (name, rows[evt.index])

    def pick_result(side):
        def pick(rows, evt: gr.SelectData):
            return (rows["catalogue"], rows[side][evt.index])
        return pick

    tab.button.click(search, inputs, tab.results, **private)
    tab.image.input(lambda: None, outputs=tab.item, **private).then(search, inputs, tab.results, **private)
    tab.backbone.input(search, inputs, tab.results, **private)
    tab.k.release(search, inputs, tab.results, **private)
    tab.catalogue.input(change_catalogue, tab.catalogue, [tab.backbone, tab.examples, tab.example_rows],
                        **private).then(search, inputs, tab.results, **private)
    for gallery, pick, source in [(tab.examples, pick_example, [tab.example_rows, tab.catalogue]),
                                  (tab.galleries["pretrained"], pick_result("pretrained"), [tab.shown]),
                                  (tab.galleries["finetuned"], pick_result("finetuned"), [tab.shown])]:
        gallery.select(pick, source, tab.item, **private).then(
            search_item, [*tab.query, tab.item], [tab.image, tab.item, *tab.results], **private)
