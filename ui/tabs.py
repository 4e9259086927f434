"""The Metrics and Report tabs: each catalogue's fine-tuning validation and
its report, with the query placed on the report's 2-D maps after a search."""

from pathlib import Path

import gradio as gr

from retrieval.report.view import ReportView, side_maps
from retrieval.search.service import Service
from ui.format import SIDE_TITLES, metrics_markdown


def metrics_tab(service: Service):
    gr.Markdown("Validation retrieval metrics of each catalogue's fine-tuning run "
                "(from its metrics.json) and its training curves.")
    for served in service.served:
        if served.catalogue is None:
            continue
        validation = served.validation()
        gr.Markdown(metrics_markdown(served.config.name, served.backbone, validation, served.finetuned_note))
        if validation and validation.get("curves"):
            gr.Image(validation["curves"], label=f"{served.config.name}: fine-tuning curves", interactive=False)


def report_tab(service: Service, reports: dict, reports_dir) -> list:
    """The tab's content; returns the two query-map images a search fills."""
    folder = Path(reports_dir).name
    gr.Markdown("Every embedding compared on a catalogue, from "
                f"`python -m retrieval report --output {folder}/NAME`: its tables and "
                "plots, and after a search, where the query falls on the 2-D maps.")
    with gr.Row():
        query_maps = [gr.Image(label=f"{title}: the query on the 2-D map", show_label=False, interactive=False,
                               elem_id=f"report-map-{side}") for side, title in SIDE_TITLES.items()]
    for name in service.names(loaded_only=True):
        view = reports.get(name, f"No report yet: make one with `python -m retrieval report "
                                 f"--catalogue SPEC --head RUN_DIR --output {folder}/{name}`.")
        gr.Markdown(f"### {name}\n\n" + (view.markdown() if isinstance(view, ReportView) else view))
        if isinstance(view, ReportView):
            gr.Gallery(view.plots(), label=f"{name}: plots", columns=2, height="auto", object_fit="contain")
    return query_maps


def place_query_function(service: Service, reports: dict):
    """Each side's 2-D map with the query starred, after a search."""
    def place_query(catalogue, item, rows):
        view = reports.get(catalogue)
        if not isinstance(view, ReportView) or not rows:
            return None, None
        return side_maps(view, service.get(catalogue), rows, item[1] if item and item[0] == catalogue else None)
    return place_query
