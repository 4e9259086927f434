"""The Search tab's events: anything that changes the query (an upload, a
catalogue item or result searched with, a control, a 👍 / 👎, an example
removed, Start over) updates the state, then runs the one search; selecting
a result only remembers it for the buttons under its gallery."""

import gradio as gr

from retrieval.search.service import Service
from ui import feedback, filters
from ui.edge import refusing
from ui.search_tab import SearchTab, examples_for, search_function, why_function

PRIVATE = {"api_visibility": "private"}


def wire(tab: SearchTab, service: Service):
    """Every event of the tab."""
    search = search_function(service)

    def then_search(event):
        event.success(search, tab.inputs, tab.results, **PRIVATE)

    gr.on([tab.button.click, tab.backbone.input, tab.k.release, tab.filters.box.submit,
           *(c.input for c in tab.filters.choices), *(n.submit for pair in tab.filters.ranges for n in pair),
           tab.hygiene[0].release, tab.hygiene[1].release, tab.hygiene[2].input],
          search, tab.inputs, tab.results, **PRIVATE)
    then_search(tab.image.input(lambda catalogue: (None, *feedback.cleared(service, catalogue)),
                                tab.catalogue, [tab.item, tab.feedback, *tab.in_play], **PRIVATE))
    then_search(tab.catalogue.input(catalogue_function(service), tab.catalogue,
                                    [tab.backbone, tab.examples, tab.example_rows, tab.feedback, *tab.in_play,
                                     *tab.filters.outputs], **PRIVATE))
    wire_queries(tab, service, then_search)
    wire_feedback(tab, service, then_search)


def catalogue_function(service: Service):
    """Another catalogue: its backbones, items to click and filter fields; no examples in play."""
    def change(name):
        gallery, rows = examples_for(service, name)
        choices = service.backbones(name)
        return (gr.Dropdown(choices, value=choices[0]), gr.Gallery(gallery), rows, *feedback.cleared(service, name),
                *filters.relabel(service, name))
    return change


def wire_queries(tab: SearchTab, service: Service, then_search):
    """A catalogue item clicked, or a result searched with: the new query, shown in the query box."""
    new_query = [tab.image, tab.item, tab.feedback, *tab.in_play]

    def start(catalogue, row):
        return str(service.thumbnail(catalogue, row)), (catalogue, row), *feedback.cleared(service, catalogue)

    def pick_example(rows, name, evt: gr.SelectData):
        return start(name, rows[evt.index])

    def search_with(side):
        @refusing
        def pick(shown, selected):
            return start(shown["catalogue"], feedback.selected_row(shown, selected, side))
        return pick

    then_search(tab.examples.select(pick_example, [tab.example_rows, tab.catalogue], new_query, **PRIVATE))
    for side, buttons in tab.actions.items():
        then_search(buttons["search"].click(search_with(side), [tab.shown, tab.selected], new_query, **PRIVATE))


def wire_feedback(tab: SearchTab, service: Service, then_search):
    """Selecting a result, 👍 / 👎 on it, Why? for it, removing an example, starting over."""
    def select(side):
        def remember(selected, evt: gr.SelectData):  # a second click on it unselects it
            return {**(selected or {}), side: evt.index if evt.selected else None}
        return remember

    def mark(side, kind):
        @refusing
        def act(liked, shown, selected, catalogue):
            row = feedback.selected_row(shown, selected, side)
            liked = feedback.marked(liked, catalogue, kind, service.item_id(shown["catalogue"], row), row)
            return liked, *feedback.shown(service, liked)
        return act

    def remove(liked, evt: gr.SelectData):
        liked = feedback.removed(liked, evt.index)
        return liked, *feedback.shown(service, liked)

    examples = [tab.feedback, *tab.in_play]
    for side, buttons in tab.actions.items():
        tab.galleries[side].select(select(side), tab.selected, tab.selected, **PRIVATE)
        for kind, action in (("liked", "like"), ("disliked", "dislike")):
            then_search(buttons[action].click(mark(side, kind), [tab.feedback, tab.shown, tab.selected,
                                                                 tab.catalogue], examples, **PRIVATE))
        buttons["why"].click(why_function(service, side), [tab.image, tab.catalogue, tab.backbone, tab.item,
                                                           tab.feedback, tab.shown, tab.selected], tab.why, **PRIVATE)
    then_search(tab.in_play[0].select(remove, tab.feedback, examples, **PRIVATE))
    then_search(tab.in_play[1].click(lambda catalogue: feedback.cleared(service, catalogue), tab.catalogue, examples,
                                     **PRIVATE))
