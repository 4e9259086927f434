"""The whole page: a status line, the Search, Duplicates, Metrics and Report
tabs, the API endpoints, and the queue that bounds the requests in flight."""

import os

import gradio as gr

from retrieval.data.images import MAX_BYTES
from retrieval.report.view import open_reports
from retrieval.search.service import Service
from ui import search_events, search_tab
from ui.api import add_endpoints
from ui.duplicates_tab import duplicates_tab
from ui.edge import GuardedBlocks, unknown_endpoint
from ui.format import status_markdown
from ui.sessions import SessionSweeper
from ui.tabs import metrics_tab, place_query_function, report_tab

# Gradio's queue keeps its last GRADIO_ANALYTICS_MAX_EVENTS events (default
# 10,000) for its monitoring page and rebuilds a pandas summary of all of them
# every GRADIO_ANALYTICS_CACHE_FREQUENCY events (default 1): 3-4 ms of CPU per
# request at first and 12 ms once 10,000 are kept, so a long-running server
# grew slower and larger. Every 100 events over the last 1,000 it is noise.
# Read when the queue is made (build_demo); an operator's own setting wins.
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "100")
# Uploads (and gradio's copies of result files) older than UPLOAD_MAX_AGE
# seconds are deleted every UPLOAD_SWEEP seconds: a query is answered in well
# under a second, so nothing a client still needs is lost, and the disk does
# not fill with every image anyone ever searched with.
UPLOAD_SWEEP, UPLOAD_MAX_AGE = 60, 300
# Up to QUERY_CONCURRENCY requests run at once (in gradio's worker threads)
# and hand their images to one batching worker (retrieval/search/batching.py);
# more wait in a queue of at most QUEUE_SIZE, and past that a client is told
# the server is busy instead of waiting minutes. Under 32 users (BENCHMARKS.md,
# session 7) 8 served 1.10x the requests of 4 at 0.94x the CPU per request,
# for ~100 MB more memory; 16 cost more CPU per request than 4 (session 5).
QUERY_CONCURRENCY, QUEUE_SIZE = 8, 256
# Galleries of results (and of catalogue items) fit their column: as many
# columns as asked, each as wide as the column allows (gradio's 100 px minimum
# overflowed a narrow column sideways); captions sit under their image, whole,
# line by line (score and class, metadata, near-identical), instead of a
# one-line label cut off over the picture; galleries grow to show every result.
CSS = """
.results .grid-container { grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)) !important;
  grid-template-rows: none !important; grid-auto-rows: auto !important; }
.results .thumbnail-item { aspect-ratio: auto !important; height: auto !important; display: flex !important;
  flex-direction: column; }
.results .thumbnail-item img { aspect-ratio: 1 / 1; height: auto !important; }
.results .fixed-height { min-height: 0 !important; max-height: none !important; }
.results .caption-label { position: static !important; max-width: 100% !important; white-space: pre-line !important;
  overflow-wrap: anywhere; border: none !important; line-height: 1.25; }
.hint { font-size: var(--text-sm); color: var(--body-text-color-subdued); }
"""


def build_demo(service: Service, reports_dir="reports") -> gr.Blocks:
    """The page for `service`; each catalogue's report is `reports_dir`/NAME."""
    reports = open_reports(service.served, reports_dir)  # catalogue name -> ReportView or why not
    private = {"api_visibility": "private"}
    with GuardedBlocks(title="Lookalike", delete_cache=(UPLOAD_SWEEP, UPLOAD_MAX_AGE)) as demo:
        sweeper = SessionSweeper(demo)
        gr.Markdown("# Lookalike\nGive it a picture; it recommends the catalogue items that look most alike, "
                    "with the pretrained and the fine-tuned embedding side by side.")
        status = gr.Markdown(status_markdown(service.status()))
        timer = gr.Timer(2, active=service.building)  # refreshes the status while indexes build
        with gr.Tab("Search"):
            tab = search_tab.layout(service, service.names(loaded_only=True)[0])
        with gr.Tab("Duplicates"):
            duplicates_tab(service)
        with gr.Tab("Metrics"):
            metrics_tab(service)
        with gr.Tab("Report"):
            query_maps = report_tab(service, reports, reports_dir)
        search_events.wire(tab, service)
        tab.shown.change(place_query_function(service, reports), [tab.catalogue, tab.item, tab.shown], query_maps,
                         **private)

        def refresh():
            return status_markdown(service.status()), gr.Timer(active=service.building)

        def page_loaded(request: gr.Request):
            sweeper.page_loaded(request.session_hash)
            return refresh()

        demo.load(page_loaded, outputs=[status, timer], **private)
        timer.tick(refresh, outputs=[status, timer], **private)
        add_endpoints(service)
    demo.queue(default_concurrency_limit=QUERY_CONCURRENCY, max_size=QUEUE_SIZE)
    sweeper.start()
    demo.sweeper = sweeper  # tests sweep by hand
    return demo


def launch_options(service: Service) -> dict:
    """What `demo.launch` needs besides the address: the thumbnails' folder
    may be served, uploads are capped at the size a query accepts, and an
    unknown API name is a 404 (not gradio's 500 with a traceback)."""
    from gradio.route_utils import FnIndexInferError

    return {"allowed_paths": [str(service.thumbnails.folder)], "max_file_size": MAX_BYTES, "css": CSS,
            "app_kwargs": {"exception_handlers": {FnIndexInferError: unknown_endpoint}}}
