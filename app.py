"""`python app.py`: the Lookalike Gradio demo. It only wires the UI to
retrieval.service, which serves the catalogues of spaces.yaml (plus any given
with --catalogue) with their pretrained and fine-tuned embeddings."""

import argparse
import logging
import os
import sys
from pathlib import Path

import gradio as gr

from retrieval.errors import LookalikeError
from retrieval.evaluate import metrics_table
from retrieval.service import MAX_K, CatalogueConfig, Service, load_manifest, on_space

ROOT = Path(__file__).resolve().parent
SIDE_TITLES = {"pretrained": "Pretrained", "finetuned": "Fine-tuned"}


def caption(result, query_label) -> str:
    """Similarity, then class name (long names get cut off at the end); ✓ when
    it shares the query's class."""
    mark = "✓ " if query_label is not None and result.label == query_label else ""
    return f"{result.score:.3f} · {mark}{result.label}"


def status_markdown(service: Service) -> str:
    lines = []
    for s in service.status():
        head = f"**{s['catalogue']}** ({s['backbone']}"
        head += f", {s['items']} items)" if s["items"] is not None else ")"
        state = s["status"]
        if state == "building":
            so_far = f", {s['building_seconds']} s so far" if s["building_seconds"] is not None else ", queued"
            state = f"building or reusing its features and indexes{so_far} (progress bars in the server log)…"
        fine = f" · fine-tuned: {s['finetuned']}" if s["finetuned"] else " · no fine-tuned head"
        lines.append(f"- {head}: {state}" + (fine if s["status"] == "ready" else ""))
    return "\n".join(lines)


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


def build_demo(service: Service) -> gr.Blocks:
    names = [n for n in service.names() if any(s.catalogue for s in service.served if s.config.name == n)]
    first = names[0]

    def examples_for(catalogue):
        served = service.get(catalogue)
        rows = service.examples(catalogue)
        return [(served.catalogue.image(r), served.catalogue.label_names[served.catalogue.labels[r]])
                for r in rows], rows

    def search(image, catalogue, backbone, k, item):
        """Both galleries for a query; `item` = (catalogue, row) when the query
        is a catalogue item (its class is known)."""
        query_row = item[1] if item and item[0] == catalogue else None
        if image is None and query_row is None:
            return gr.Gallery(value=None), gr.Gallery(value=None), "", {}
        try:
            answer = service.answer(image, catalogue, int(k), backbone or None, query_row)
        except LookalikeError as e:
            raise gr.Error(str(e)) from e
        served, outputs, shown = answer.served, [], {"catalogue": catalogue}
        for side, title in SIDE_TITLES.items():
            rec = getattr(served, side)
            results = answer.results.get(side, [])
            label = f"{title} {rec.embedding_name}" if rec else f"{title}: none"
            if answer.hits(side) is not None:
                label += f" · {answer.hits(side)}/{len(results)} share the query's class ({answer.query_label})"
            outputs.append(gr.Gallery(value=[(served.catalogue.image(r.row), caption(r, answer.query_label))
                                             for r in results], label=label))
            shown[side] = [r.row for r in results]
        note = "" if served.finetuned else served.finetuned_note
        return *outputs, note, shown

    def search_item(catalogue, backbone, k, item):
        served = service.get(catalogue, backbone or None)
        return (served.catalogue.image(item[1]), item, *search(None, catalogue, backbone, k, item))

    with gr.Blocks(title="Lookalike") as demo:
        gr.Markdown("# Lookalike\nGive it a picture; it recommends the catalogue items that look most alike, "
                    "with the pretrained and the fine-tuned embedding side by side.")
        status = gr.Markdown(status_markdown(service))
        timer = gr.Timer(2, active=service.building)  # refreshes the status while indexes build
        first_examples, first_rows = examples_for(first)
        item = gr.State(None)         # (catalogue, row) when the query is a catalogue item
        shown = gr.State({})          # rows of the results on show, per side
        example_rows = gr.State(first_rows)
        with gr.Tab("Search"):
            with gr.Row():
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
                                          columns=3, allow_preview=False, elem_id="examples")
                with gr.Column(scale=3):
                    with gr.Row():
                        pretrained = gr.Gallery(label=SIDE_TITLES["pretrained"], columns=3,
                                                allow_preview=False, elem_id="pretrained")
                        with gr.Column():
                            finetuned = gr.Gallery(label=SIDE_TITLES["finetuned"], columns=3,
                                                   allow_preview=False, elem_id="finetuned")
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
            """Recommendations of both embeddings for an image: {catalogue, backbone, k, query,
            pretrained: {embedding, results: [{rank, id, label, score, image (data URL)}], ...},
            finetuned: {...}} (fine-tuned `note` says how to make a missing head)."""
            try:
                return service.recommend(image["path"], catalogue, k, backbone or None)
            except LookalikeError as e:
                raise gr.Error(str(e)) from e

        def catalogues() -> list:
            """Every configured catalogue with its status ("ready", "building",
            "unavailable: reason") and its embeddings."""
            return service.status()

        gr.api(recommend, api_name="recommend")
        gr.api(catalogues, api_name="catalogues")
    return demo


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
    args = p.parse_args(argv)
    args.extra = getattr(args, "extra", None) or []
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up requests
    try:
        configs = [] if args.no_manifest else load_manifest(args.manifest)
        configs += [CatalogueConfig(backbone=args.backbone, per_class=args.per_class, **c) for c in args.extra]
        service = Service(configs, cache_dir=args.cache_dir, device=args.device)
    except LookalikeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    demo = build_demo(service)
    host = os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space() else "127.0.0.1")
    demo.launch(server_name=host, server_port=int(os.environ.get("GRADIO_SERVER_PORT") or 7860),
                prevent_thread_lock=True)
    # The page is up; build in the main thread, whose malloc arena reuses the
    # feature extraction's memory (a thread's arena page-faults it anew: BENCHMARKS.md)
    service.build_all()
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
