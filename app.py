"""`python app.py`: the Lookalike Gradio demo. It only wires the UI to
retrieval.service, which serves the catalogues of spaces.yaml (plus any given
with --catalogue) and answers queries with render-ready records."""

import argparse
import logging
import os
import sys
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder, is_in_or_equal

from retrieval.cli.allocator import keep_freed_memory
from retrieval.data.images import MAX_BYTES
from retrieval.errors import LookalikeError
from retrieval.evaluation.table import metrics_table
from retrieval.report.view import ReportView, open_reports, side_maps
from retrieval.search.service import MAX_K, Service
from retrieval.search.spaces import CatalogueConfig, load_manifest, on_space

log = logging.getLogger("lookalike.app")
ROOT = Path(__file__).resolve().parent
# Gradio's queue keeps its last GRADIO_ANALYTICS_MAX_EVENTS events (default
# 10,000) for its monitoring page and rebuilds a pandas summary of all of them
# every GRADIO_ANALYTICS_CACHE_FREQUENCY events (default 1): 3-4 ms of CPU per
# request at first and 12 ms once 10,000 are kept, so a long-running server
# grew slower and larger. Every 100 events over the last 1,000 it is noise.
# Read when the queue is made; an operator's own setting wins.
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "100")
# Uploads (and gradio's copies of result files) older than UPLOAD_MAX_AGE
# seconds are deleted every UPLOAD_SWEEP seconds: a query is answered in well
# under a second, so nothing a client still needs is lost, and the disk does
# not fill with every image anyone ever searched with.
UPLOAD_SWEEP, UPLOAD_MAX_AGE = 60, 300
# Up to QUERY_CONCURRENCY requests run at once (in gradio's worker threads)
# and hand their images to one batching worker (retrieval/batching.py); more
# wait in a queue of at most QUEUE_SIZE, and past that a client is told the
# server is busy instead of waiting minutes. Under 32 users (BENCHMARKS.md,
# session 7) 8 served 1.10x the requests of 4 at 0.94x the CPU per request,
# for ~100 MB more memory; 16 cost more CPU per request than 4 (session 5).
QUERY_CONCURRENCY, QUEUE_SIZE = 8, 256
SIDE_TITLES = {"pretrained": "Pretrained", "finetuned": "Fine-tuned"}
NOT_UPLOADED = "the image must be uploaded with the request (gradio_client's handle_file); server paths are refused"
# Result captions wrap instead of being cut off, and galleries grow to show
# every result instead of scrolling with a half-hidden last row.
CSS = """
.results .caption-label { white-space: normal !important; max-width: 100% !important; line-height: 1.2; }
"""


def caption(match) -> str:
    """Similarity, then class name; ✓ when it shares the query's class."""
    return f"{match.score:.3f} · {'✓ ' if match.same_class else ''}{match.label}"


def side_label(title: str, side) -> str:
    label = f"{title} {side.embedding}" if side.embedding else f"{title}: none"
    if side.same_class is not None:
        label += f" · {side.same_class}/{len(side.results)} share the query's class"
    return label


def uploaded(file) -> bytes:
    """The bytes of a file the client uploaded with this request. Anything
    else (a server path, a file outside gradio's upload folder) is refused
    with one message whether or not it exists, so callers can't probe the
    server's file system."""
    path = file.get("path") if isinstance(file, dict) else file
    if not isinstance(path, str) or not is_in_or_equal(path, get_upload_folder()) or not os.path.isfile(path):
        raise LookalikeError(NOT_UPLOADED)
    if os.path.getsize(path) > MAX_BYTES:
        raise LookalikeError(f"the image is larger than {MAX_BYTES // 1_000_000} MB")
    with open(path, "rb") as f:
        return f.read()


def refused(error: LookalikeError) -> gr.Error:
    """The client gets the message; the log gets one line, not a traceback."""
    log.info("refused: %s", error)
    return gr.Error(str(error), print_exception=False)


def status_markdown(service: Service) -> str:
    lines = []
    for s in service.status():
        head = f"**{s['catalogue']}** ({s['backbone']}"
        head += f", {s['items']} items)" if s["items"] is not None else ")"
        state = s["status"]
        if state == "building":
            state = progress_text(s["progress"]) if s["progress"] else "queued (another catalogue is building)"
        fine = f" · fine-tuned: {s['finetuned']}" if s["finetuned"] else " · no fine-tuned head"
        lines.append(f"- {head}: {state}" + (fine if s["status"] == "ready" else ""))
    return "\n".join(lines)


def progress_text(progress: dict) -> str:
    """'extracting features ▓▓▓░░░░░░░ 1,234 / 4,052 images (30%), about 2 min left'."""
    if not progress["total"]:
        return f"{progress['phase']}…"
    filled = round(10 * progress["done"] / progress["total"])
    left = progress["seconds_left"]
    eta = "" if left is None else (f", about {left // 60} min {left % 60} s left" if left >= 60
                                   else f", about {left} s left")
    return (f"{progress['phase']} {'▓' * filled}{'░' * (10 - filled)} {progress['done']:,} / "
            f"{progress['total']:,} {progress['unit']} ({progress['percent']}%){eta}")


def train_missing_head(recommender, run_dir, progress):
    """The app's trainer: a catalogue's configured head that does not exist
    yet is trained once its features are there (python -m finetune's defaults)."""
    from finetune.pipeline import finetune

    finetune(recommender, run_dir, source={"catalogue": recommender.catalogue.spec}, progress=progress)


def metrics_markdown(name: str, backbone: str, validation: dict | None, note: str) -> str:
    """The validation table of a catalogue's fine-tuning run (metrics.json)."""
    title = f"### {name} ({backbone})\n\n"
    if validation is None:
        return title + note
    if "error" in validation:
        return title + f"Could not read the run's metrics: {validation['error']}"
    m = validation["metrics"]
    rows = [("Pretrained", m.get("pretrained")), ("Pretrained + whitening", m.get("whitening")),
            (f"Fine-tuned (best epoch {m.get('best', {}).get('epoch', '?')})", m.get("best"))]
    base, names = m.get("pretrained") or {}, m.get("validation_classes") or []
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    held_out = (f"Measured on {base.get('n_images', '?')} images of {base.get('n_classes', '?')} classes "
                f"held out from training ({shown}): a class-disjoint validation slice of the training classes.")
    return title + held_out + "\n\n" + metrics_table(rows)


def build_demo(service: Service, reports_dir=ROOT / "reports") -> gr.Blocks:
    names = service.names(loaded_only=True)
    reports = open_reports(service.served, reports_dir)  # catalogue name -> ReportView or why not
    first = names[0]

    def examples_for(catalogue):
        examples = service.examples(catalogue)
        return [(str(e.thumbnail), e.label) for e in examples], [e.row for e in examples]

    def search(image, catalogue, backbone, k, item):
        """Both galleries for a query; `item` = (catalogue, row) when the query
        is a catalogue item (shown apart, left out of the results)."""
        query_row = item[1] if item and item[0] == catalogue else None
        if image is None and query_row is None:
            return gr.Gallery(value=None), gr.Gallery(value=None), "", {}
        try:
            source = None if query_row is not None else uploaded(image)
            answer = service.answer(source, catalogue, int(k), backbone or None, query_row)
        except LookalikeError as e:
            raise refused(e) from e
        outputs, shown = [], {"catalogue": catalogue}
        for side, title in SIDE_TITLES.items():
            results = answer.sides[side].results
            outputs.append(gr.Gallery(value=[(str(m.thumbnail), caption(m)) for m in results],
                                      label=side_label(title, answer.sides[side])))
            shown[side] = [m.row for m in results]
        return *outputs, answer.sides["finetuned"].note or "", shown

    def search_item(catalogue, backbone, k, item):
        query = str(service.thumbnail(catalogue, item[1]))
        return (query, item, *search(None, catalogue, backbone, k, item))

    with gr.Blocks(title="Lookalike", delete_cache=(UPLOAD_SWEEP, UPLOAD_MAX_AGE)) as demo:
        gr.Markdown("# Lookalike\nGive it a picture; it recommends the catalogue items that look most alike, "
                    "with the pretrained and the fine-tuned embedding side by side.")
        status = gr.Markdown(status_markdown(service))
        timer = gr.Timer(2, active=service.building)  # refreshes the status while indexes build
        first_examples, first_rows = examples_for(first)
        item = gr.State(None)         # (catalogue, row) when the query is a catalogue item
        shown = gr.State({})          # rows of the results on show, per side
        example_rows = gr.State(first_rows)
        with gr.Tab("Search"), gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(label="Query image: upload, paste or snap one",
                                 sources=["upload", "clipboard", "webcam"], type="filepath", height=260,
                                 elem_id="query")
                catalogue = gr.Dropdown(names, value=first, label="Catalogue")
                backbone = gr.Dropdown(service.backbones(first), value=service.backbones(first)[0],
                                       label="Backbone")
                k = gr.Slider(1, MAX_K, value=10, step=1, label="k (results per embedding)")
                button = gr.Button("Search", variant="primary")
                examples = gr.Gallery(first_examples, label="Or click a catalogue item",
                                      columns=3, allow_preview=False, elem_id="examples", elem_classes="results")
            with gr.Column(scale=3), gr.Row():
                pretrained = gr.Gallery(label=SIDE_TITLES["pretrained"], columns=3, height="auto",
                                        allow_preview=False, elem_id="pretrained", elem_classes="results")
                with gr.Column():
                    finetuned = gr.Gallery(label=SIDE_TITLES["finetuned"], columns=3, height="auto",
                                           allow_preview=False, elem_id="finetuned",
                                           elem_classes="results")
                    note = gr.Markdown(elem_id="finetuned-note")
        with gr.Tab("Metrics"):
            gr.Markdown("Validation retrieval metrics of each catalogue's fine-tuning run "
                        "(from its metrics.json) and its training curves.")
            for served in service.served:
                if served.catalogue is None:
                    continue
                validation = served.validation()
                gr.Markdown(metrics_markdown(served.config.name, served.backbone, validation,
                                             served.finetuned_note))
                if validation and validation.get("curves"):
                    gr.Image(validation["curves"], label=f"{served.config.name}: fine-tuning curves",
                             interactive=False)

        with gr.Tab("Report"):
            gr.Markdown("Every embedding compared on a catalogue, from "
                        f"`python -m retrieval report --output {Path(reports_dir).name}/NAME`: its tables and "
                        "plots, and after a search, where the query falls on the 2-D maps.")
            with gr.Row():
                query_maps = [gr.Image(label=f"{title}: the query on the 2-D map", show_label=False,
                                       interactive=False, elem_id=f"report-map-{side}")
                              for side, title in SIDE_TITLES.items()]
            for name in names:
                view = reports.get(name, f"No report yet: make one with `python -m retrieval report "
                                         f"--catalogue SPEC --head RUN_DIR --output {Path(reports_dir).name}/{name}`.")
                gr.Markdown(f"### {name}\n\n" + (view.markdown() if isinstance(view, ReportView) else view))
                if isinstance(view, ReportView):
                    gr.Gallery(view.plots(), label=f"{name}: plots", columns=2, height="auto", object_fit="contain")

        def place_query(catalogue, item, rows):
            view = reports.get(catalogue)
            if not isinstance(view, ReportView) or not rows:
                return None, None
            return side_maps(view, service.get(catalogue), rows, item[1] if item and item[0] == catalogue else None)

        shown.change(place_query, [catalogue, item, shown], query_maps, api_visibility="private")

        results = [pretrained, finetuned, note, shown]
        query = [catalogue, backbone, k]
        private = {"api_visibility": "private"}

        def refresh():
            return status_markdown(service), gr.Timer(active=service.building)

        demo.load(refresh, outputs=[status, timer], **private)
        timer.tick(refresh, outputs=[status, timer], **private)
        button.click(search, [image, *query, item], results, **private)
        image.input(lambda: None, outputs=item, **private).then(search, [image, *query, item], results,
                                                                 **private)
        backbone.input(search, [image, *query, item], results, **private)
        k.release(search, [image, *query, item], results, **private)

        def change_catalogue(name):
            gallery, rows = examples_for(name)
            choices = service.backbones(name)
            return gr.Dropdown(choices, value=choices[0]), gr.Gallery(gallery), rows

        catalogue.input(change_catalogue, catalogue, [backbone, examples, example_rows], **private).then(
            search, [image, *query, item], results, **private)

        def pick_example(rows, name, evt: gr.SelectData):
            return (name, rows[evt.index])

        def pick_result(side):
            def pick(rows, evt: gr.SelectData):
                return (rows["catalogue"], rows[side][evt.index])
            return pick

        for gallery, pick, source in [(examples, pick_example, [example_rows, catalogue]),
                                      (pretrained, pick_result("pretrained"), [shown]),
                                      (finetuned, pick_result("finetuned"), [shown])]:
            gallery.select(pick, source, item, **private).then(
                search_item, [*query, item], [image, item, *results], **private)

        def recommend(image: gr.FileData, catalogue: str, k: int = 10, backbone: str = "") -> dict:
            """Recommendations of both embeddings for an uploaded image: {catalogue, backbone, k, query,
            pretrained: {embedding, results: [{rank, id, label, score, image (data URL), same_class}],
            same_class, note}, finetuned: {...}} (the fine-tuned `note` says how to make a missing head)."""
            try:
                return service.recommend(uploaded(image), catalogue, k, backbone or None)
            except LookalikeError as e:
                raise refused(e) from e

        def catalogues() -> list:
            """Every configured catalogue with its status ("ready", "building",
            "unavailable: reason") and its embeddings."""
            return service.status()

        gr.api(recommend, api_name="recommend")
        gr.api(catalogues, api_name="catalogues")
    demo.queue(default_concurrency_limit=QUERY_CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def launch_options(service: Service) -> dict:
    """What `demo.launch` needs besides the address: the thumbnails' folder
    may be served, and uploads are capped at the size a query accepts."""
    return {"allowed_paths": [str(service.thumbnails.folder)], "max_file_size": MAX_BYTES, "css": CSS}


class _AddCatalogue(argparse.Action):
    """--catalogue SPEC starts a catalogue; the --head after it belongs to it."""

    def __call__(self, parser, namespace, value, option_string=None):
        extra = getattr(namespace, "extra", None) or []
        if option_string == "--head":
            if not extra:
                parser.error("--head must follow the --catalogue it belongs to")
            extra[-1]["head"] = value
        else:
            extra.append({"spec": value, "name": Path(value.rstrip("/")).name or value})
        namespace.extra = extra


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--catalogue", action=_AddCatalogue, metavar="SPEC",
                   help="serve this catalogue too (repeatable); see `python -m retrieval index -h`")
    p.add_argument("--head", action=_AddCatalogue, metavar="RUN_DIR",
                   help="fine-tuned head (RUN_DIR or hub:REPO_ID) of the --catalogue before it")
    p.add_argument("--backbone", default="auto", help="backbone of --catalogue catalogues (default auto)")
    p.add_argument("--per-class", type=int, help="keep the first N images per class of --catalogue catalogues")
    p.add_argument("--manifest", default=str(ROOT / "spaces.yaml"), help="deploy manifest (default spaces.yaml)")
    p.add_argument("--no-manifest", action="store_true", help="serve only the --catalogue catalogues")
    p.add_argument("--cache-dir", help="cache root (default $LOOKALIKE_CACHE or the user cache dir)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--reports", default=str(ROOT / "reports"),
                   help="folder of reports, one per catalogue name (python -m retrieval report; default reports/)")
    args = p.parse_args(argv)
    args.extra = getattr(args, "extra", None) or []
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up requests
    keep_freed_memory()  # a CNN's activations reuse memory instead of page-faulting it anew
    try:
        configs = [] if args.no_manifest else load_manifest(args.manifest)
        configs += [CatalogueConfig(backbone=args.backbone, per_class=args.per_class, **c) for c in args.extra]
        service = Service(configs, cache_dir=args.cache_dir, device=args.device, trainer=train_missing_head)
    except LookalikeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    demo = build_demo(service, args.reports)
    host = os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space() else "127.0.0.1")
    demo.launch(server_name=host, server_port=int(os.environ.get("GRADIO_SERVER_PORT") or 7860),
                prevent_thread_lock=True, **launch_options(service))
    # The page is up; build in the main thread, whose malloc arena reuses the
    # feature extraction's memory (a thread's arena page-faults it anew: BENCHMARKS.md)
    service.build_all()
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
