"""The Duplicates tab: the groups of near-identical images in a catalogue
(the service's, through its index), computed on demand because a large
catalogue takes a while, shown as one gallery captioned "group 3 of 84",
with the similarity threshold that joined them."""

import gradio as gr

from retrieval.search.hygiene import IDENTICAL
from retrieval.search.service import Service
from ui.edge import refusing

MAX_GROUPS = 60  # shown on the page; the CLI (`python -m retrieval duplicates`) writes them all


def threshold_note(service: Service, catalogue: str, groups: list) -> str:
    """How many groups and images, and the cosine that joined them."""
    served = service.get(catalogue)
    threshold = served.pretrained.near_identical
    how = ("only identical images: this backbone's threshold was not measured" if threshold >= IDENTICAL
           else "measured on altered copies of catalogue images")
    found = (f"**{len(groups)} groups** of near-identical images ({sum(len(g) for g in groups)} images)"
             if groups else "**No near-identical images**")
    shown = f"; the {MAX_GROUPS} largest are shown" if len(groups) > MAX_GROUPS else ""
    return (f"{found} in {catalogue}{shown}. Joined at cosine ≥ {threshold:.4g} in the pretrained "
            f"{served.backbone} embedding ({how}).")


@refusing
def groups_view(service: Service, catalogue: str) -> tuple:
    """(gallery items captioned with their group, the note) for a catalogue."""
    groups = service.duplicates(catalogue)
    note = threshold_note(service, catalogue, groups)
    items = [(str(example.thumbnail), f"group {number} of {len(groups)} · {example.label}")
             for number, group in enumerate(groups[:MAX_GROUPS], 1) for example in group]
    return gr.Gallery(items, visible=bool(items)), note


def duplicates_tab(service: Service):
    """The tab's content and its one event (inside a gr.Tab)."""
    names = service.names(loaded_only=True)
    gr.Markdown("Near-identical images in a catalogue (resized, recompressed or lightly cropped copies): "
                "candidates for merging or removing. Finding them reads every item's nearest neighbours.")
    with gr.Row():
        catalogue = gr.Dropdown(names, value=names[0], label="Catalogue", scale=3)
        with gr.Column(scale=1):
            button = gr.Button("Find near-duplicates", variant="primary", elem_id="find-duplicates")
    note = gr.Markdown(elem_id="duplicates-note")
    gallery = gr.Gallery(label="Near-duplicate groups", columns=6, height="auto", fit_columns=False,
                         visible=False, elem_id="duplicates", elem_classes="results")
    button.click(lambda name: groups_view(service, name), catalogue, [gallery, note], api_visibility="private")
