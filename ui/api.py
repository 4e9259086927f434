"""The named API endpoints (gradio_client's `api_name`): the same answers the
page shows, as JSON with thumbnails as data URLs."""

import gradio as gr

from retrieval.search.service import Service
from ui.edge import refusing, uploaded


def add_endpoints(service: Service):
    """/recommend, /similar and /catalogues (inside the page's Blocks)."""
    @refusing
    def recommend(image: gr.FileData, catalogue: str, k: int = 10, backbone: str = "", where: str = "") -> dict:
        """Recommendations of both embeddings for an uploaded image: {catalogue, backbone, k, query,
        pretrained: {embedding, results: [{rank, id, label, score, image (data URL), same_class, metadata}],
        same_class, note}, finetuned: {...}} (the fine-tuned `note` says how to make a missing head).
        `where`: a filter on the items' metadata (`make == "BMW" and price < 30000`)."""
        return service.recommend(uploaded(image), catalogue, k, backbone or None, where or None)

    @refusing
    def similar(catalogue: str, item: str, k: int = 10, where: str = "", unlike: str = "") -> dict:
        """The same answer for catalogue items, from their stored embeddings (no image sent): `item`
        one id or several, comma-separated (liked); `where` may read the first item's own values
        (`make != query.make`); `unlike`: ids of disliked items, comma-separated."""
        return service.similar(catalogue, item, k, where or None, unlike)

    def catalogues() -> list:
        """Every configured catalogue with its status ("ready", "building",
        "unavailable: reason") and its embeddings."""
        return service.status()

    gr.api(recommend, api_name="recommend")
    gr.api(similar, api_name="similar")
    gr.api(catalogues, api_name="catalogues")
