"""The Gradio app end to end: a real server on a free port, called through
gradio_client, serving tiny generated catalogues with the tiny test backbone
(the mechanics, not the model quality) and a really trained head."""

import base64
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import app
from conftest import launched
from finetune.saving import save_run
from finetune.train import TrainConfig, train_head
from retrieval.data.images import MAX_BYTES
from retrieval.errors import LookalikeError
from retrieval.models.backbones import create_backbone
from retrieval.search.query import Query
from retrieval.search.recommender import Recommender
from retrieval.search.service import Service
from retrieval.search.spaces import CatalogueConfig, load_manifest
from ui import edge, page
from ui import format as ui_format

ROOT = Path(__file__).resolve().parents[1]
from bench_startup import running_app  # noqa: E402  (how the start-up benchmark starts the app)

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220),
           "yellow": (230, 220, 30), "cyan": (30, 210, 220), "grey": (128, 128, 128)}


def make_shop(root: Path) -> Path:
    """Six classes of four generated images, a colour per class."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(4):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (48, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}{i}.png")
    return root


def train_run(shop: Path, backbone, cache: Path, run_dir: Path) -> Path:
    """A real (tiny) fine-tuning run on the shop's features, as finetune saves it."""
    rec = Recommender.open(str(shop), backbone=backbone, cache_dir=cache)
    features, rows = rec.features()
    labels = [rec.catalogue.labels[r] for r in rows]
    config = TrainConfig(epochs=2, projection_dim=16, whitening_dim=16, batch_size=8, images_per_class=2,
                         validation_fraction=0.34)
    result = train_head(features, labels, config, names=rec.catalogue.label_names)
    save_run(run_dir, result, backbone, {"loss": config.loss, "catalogue": str(shop)}, rec.catalogue.label_names)
    return run_dir


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A launched app: `shop` with a fine-tuned head, `plain` (same catalogue,
    no head) and `gone` (a folder that doesn't exist). The shop and the feature
    cache are made once per session (test_browser.py launches its own app)."""
    tmp, base = tmp_path_factory.mktemp("app"), tmp_path_factory.getbasetemp()
    shop, cache = base / "shop", base / "cache"
    if not shop.is_dir():
        make_shop(shop)
    backbone = create_backbone("tiny_test")
    run_dir = train_run(shop, backbone, cache, tmp / "runs" / "shop")
    service = Service([CatalogueConfig("shop", str(shop), "tiny_test", head=str(run_dir)),
                       CatalogueConfig("plain", str(shop), "tiny_test"),
                       CatalogueConfig("gone", str(tmp / "nowhere"), "tiny_test")],
                      cache_dir=cache, backbones={"tiny_test": backbone})
    service.build_all()
    with launched(service) as (demo, url):
        yield {"url": url, "service": service, "shop": shop, "run_dir": run_dir, "tmp": tmp, "demo": demo}


def decode(data_url: str) -> Image.Image:
    header, payload = data_url.split(",", 1)
    assert header in ("data:image/jpeg;base64", "data:image/png;base64")
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def test_recommend_returns_both_embeddings(served):
    query = served["shop"] / "green" / "green2.png"
    answer = Client(served["url"], verbose=False).predict(handle_file(str(query)), "shop", 5,
                                                          api_name="/recommend")
    assert answer["catalogue"] == "shop" and answer["backbone"] == "tiny_test" and answer["query"] is None
    assert answer["pretrained"]["embedding"] == "tiny_test"
    assert answer["finetuned"]["embedding"] == "tiny_test + shop" and answer["finetuned"]["note"] is None
    for side in ("pretrained", "finetuned"):
        results = answer[side]["results"]
        assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
        assert set(results[0]) == {"rank", "id", "label", "score", "image", "same_class", "metadata",
                                   "near_identical"}
        assert results[0]["id"] == "green/green2" and results[0]["score"] == pytest.approx(1.0, abs=1e-3)
        assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
        assert all(r["label"] in COLOURS for r in results)
        assert decode(results[0]["image"]).size == (64, 48)


def test_build_readies_the_backbones_runtime_before_the_first_query(class_folders, tmp_path):
    """Also on a start that finds everything cached, so runs no backbone."""
    for _ in range(2):
        backbone = create_backbone("tiny_test")
        Service([CatalogueConfig("shop", str(class_folders), "tiny_test")], cache_dir=tmp_path,
                backbones={"tiny_test": backbone}).build_all()
        assert backbone.runtime.startswith("openvino") and "_openvino" in vars(backbone)


def test_readme_client_snippet_runs(served, capsys):
    """The README's API snippet, run as written (pointed at this test server)."""
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "gradio_client" in b]
    assert blocks, "README.md has no ```python block using gradio_client"
    snippet = blocks[0]
    assert '"cars"' in snippet and "http://127.0.0.1:7860/" in snippet
    snippet = snippet.replace("http://127.0.0.1:7860/", served["url"]).replace('"cars"', '"shop"')
    snippet = re.sub(r'handle_file\("[^"]+"\)', f'handle_file("{served["shop"] / "red" / "red1.png"}")', snippet)
    exec(compile(snippet, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "tiny_test + shop" in out and "('red', 1.0)" in out


def test_queue_bounds_concurrency_waiting_requests_and_its_own_analytics(served):
    """Gradio's defaults would summarise every kept event after every request
    (see ui/page.py): the served queue must use the page's settings."""
    queue = served["demo"]._queue
    assert (queue.default_concurrency_limit, queue.max_size) == (page.QUERY_CONCURRENCY, page.QUEUE_SIZE)
    assert queue.ANALYTICS_MAX_EVENTS <= 1000 and queue.ANAYLTICS_CACHE_FREQUENCY >= 100


def test_catalogues_endpoint_lists_unavailable_with_reason(served):
    status = {s["catalogue"]: s for s in Client(served["url"], verbose=False).predict(api_name="/catalogues")}
    assert status["shop"]["status"] == "ready" and status["shop"]["items"] == 24
    assert status["gone"]["status"].startswith("unavailable: ") and "no such folder" in status["gone"]["status"]
    assert str(served["tmp"]) not in json.dumps(status)  # no server paths


def test_non_image_upload_is_a_clear_error(served):
    text = served["tmp"] / "notes.txt"
    text.write_text("not a picture")
    with pytest.raises(AppError, match="not a readable image"):
        Client(served["url"], verbose=False).predict(handle_file(str(text)), "shop", 5, api_name="/recommend")


def test_server_paths_are_refused_alike_whether_or_not_they_exist(served):
    """A raw API call naming a server file (no upload) is refused with one
    message, the same for a file that exists and one that doesn't."""
    client = Client(served["url"], verbose=False)
    messages = []
    for path in ("/etc/passwd", str(served["shop"] / "red" / "red0.png"), "/no/such/file.png"):
        with pytest.raises(AppError) as refused:
            client.predict({"path": path}, "shop", 5, api_name="/recommend")
        messages.append(str(refused.value))
    assert len(set(messages)) == 1 and edge.NOT_UPLOADED in messages[0]


def test_uploads_over_the_size_limit_are_refused_by_the_server_and_not_kept(served):
    """The server itself refuses an upload over MAX_BYTES (413, before any
    query runs) and keeps no part of it on disk."""
    big = served["tmp"] / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + bytes(MAX_BYTES))

    def stored():
        return {path for path in Path(get_upload_folder()).rglob("*") if path.is_file()}

    before = stored()
    with open(big, "rb") as f:
        response = httpx.post(served["url"].rstrip("/") + "/gradio_api/upload", files={"files": f}, timeout=120)
    assert response.status_code == 413
    assert not stored() - before


def test_uploads_are_swept_after_a_few_minutes(served):
    assert served["demo"].delete_cache == (page.UPLOAD_SWEEP, page.UPLOAD_MAX_AGE)
    assert page.UPLOAD_MAX_AGE <= 600


def test_a_refused_request_is_one_log_line_without_a_traceback(served, caplog, capfd):
    text = served["tmp"] / "notes-logged.txt"
    text.write_text("not a picture")
    with caplog.at_level(logging.INFO, logger="lookalike.app"), pytest.raises(AppError):
        Client(served["url"], verbose=False).predict(handle_file(str(text)), "shop", 5, api_name="/recommend")
    lines = [record for record in caplog.records if record.name == "lookalike.app"]
    assert len(lines) == 1 and lines[0].getMessage().startswith("refused: ") and lines[0].exc_info is None
    assert "Traceback" not in capfd.readouterr().err


def test_catalogue_without_head_says_how_to_make_one(served):
    query = served["shop"] / "blue" / "blue0.png"
    answer = Client(served["url"], verbose=False).predict(handle_file(str(query)), "plain", 3,
                                                          api_name="/recommend")
    assert len(answer["pretrained"]["results"]) == 3
    assert answer["finetuned"]["embedding"] is None and answer["finetuned"]["results"] == []
    # placeholders, not the server's paths (the server's log has those)
    assert answer["finetuned"]["note"] == ("No fine-tuned head yet. Make one with `python -m finetune "
                                           "--catalogue CATALOGUE --backbone tiny_test --output RUN_DIR`")


def test_catalogue_item_query_is_shown_apart_and_marks_its_class(served):
    """A catalogue item as the query: it is not among its own results (so it
    is never counted as its own hit), results of its class are marked and
    counted, the page and the API render the same answer."""
    service = served["service"]
    answer = service.similar("shop", "cyan/cyan1", 6)
    assert answer["query"]["id"] == "cyan/cyan1" and answer["query"]["label"] == "cyan"
    assert decode(answer["query"]["image"]).size == (64, 48)
    for side in ("pretrained", "finetuned"):
        results = answer[side]["results"]
        assert len(results) == 6 and [r["rank"] for r in results] == [1, 2, 3, 4, 5, 6]
        assert "cyan/cyan1" not in [r["id"] for r in results]
        assert [r["same_class"] for r in results] == [r["label"] == "cyan" for r in results]
        assert answer[side]["same_class"] == sum(r["label"] == "cyan" for r in results) <= 3
    shown = service.answer(Query(items=["cyan/cyan1"], k=6), "shop").sides["pretrained"]
    assert ui_format.side_label("Pretrained", shown).endswith(f"{answer['pretrained']['same_class']}/6 share the "
                                                         "query's class")
    assert [ui_format.caption(m) for m in shown.results] == [
        f"{r['score']:.3f} · {'✓ ' if r['same_class'] else ''}{r['label']}" for r in answer["pretrained"]["results"]]


def test_bad_k_and_unknown_catalogue_are_clear_errors(served):
    client = Client(served["url"], verbose=False)
    query = handle_file(str(served["shop"] / "red" / "red0.png"))
    with pytest.raises(AppError, match="k must be a whole number from 1 to 50"):
        client.predict(query, "shop", 0, api_name="/recommend")
    with pytest.raises(AppError, match="unknown catalogue 'nope'; served: shop, plain, gone"):
        client.predict(query, "nope", 5, api_name="/recommend")


def test_metrics_tab_shows_the_runs_validation_table(served):
    served_shop = served["service"].get("shop")
    validation = served_shop.validation()
    metrics = json.loads((served["run_dir"] / "metrics.json").read_text())
    text = ui_format.metrics_markdown("shop", "tiny_test", validation, served_shop.finetuned_note)
    best = metrics["best"]
    assert f"| Fine-tuned (best epoch {best['epoch']}) | {best['recall_at_1']:.3f} |" in text
    assert f"| Pretrained | {metrics['pretrained']['recall_at_1']:.3f} |" in text
    assert validation["curves"] == str(served["run_dir"] / "curves.png")
    plain = served["service"].get("plain")
    assert plain.validation() is None
    assert "python -m finetune" in ui_format.metrics_markdown("plain", "tiny_test", None, plain.finetuned_note)


def test_app_fails_only_when_no_catalogue_loads(tmp_path, capsys):
    with pytest.raises(LookalikeError, match="no catalogue could be loaded .*nowhere: unavailable: "):
        Service([CatalogueConfig("nowhere", str(tmp_path / "missing"), "tiny_test")])
    argv = ["--no-manifest", "--catalogue", str(tmp_path / "missing"), "--backbone", "tiny_test"]
    assert app.main(argv) == 2
    assert "error: no catalogue could be loaded" in capsys.readouterr().err


def test_head_flag_belongs_to_the_catalogue_before_it():
    args = app.parse_args(["--catalogue", "a", "--head", "runs/a", "--catalogue", "hub:x/b:test"])
    assert args.extra == [{"spec": "a", "name": "a", "head": "runs/a"}, {"spec": "hub:x/b:test", "name": "b:test"}]
    with pytest.raises(SystemExit):
        app.parse_args(["--head", "runs/a"])


def test_manifest_places_and_relative_paths(tmp_path, monkeypatch):
    (tmp_path / "deploy" / "shop").mkdir(parents=True)
    manifest = tmp_path / "deploy" / "spaces.yaml"
    manifest.write_text(yaml.safe_dump({"catalogues": [
        {"name": "shop", "per_class": 3, "local": {"spec": "shop", "head": "runs/shop"},
         "space": {"spec": "hub:o/shop:train", "backbone": "resnet18", "head": "hub:o/head"}},
        {"name": "local-only", "local": {"spec": "fashion-mnist:test"}}]}))
    monkeypatch.chdir(tmp_path)
    local = load_manifest(manifest, space=False)
    assert local == [CatalogueConfig("shop", "deploy/shop", "auto", "deploy/runs/shop", 3),
                     CatalogueConfig("local-only", "fashion-mnist:test")]
    assert load_manifest(manifest, space=True) == [
        CatalogueConfig("shop", "hub:o/shop:train", "resnet18", "hub:o/head", 3)]
    manifest.write_text("catalogues:\n  - {name: x, local: {spec: y, heads: z}}\n")
    with pytest.raises(LookalikeError, match="knows only"):
        load_manifest(manifest, space=False)


def test_spaces_manifest_matches_front_matter():
    """README.md's front matter (what the Hub reads), spaces.yaml (the deploy
    manifest) and requirements.txt must agree."""
    readme = (ROOT / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", readme, re.S)
    assert match, "README.md has no YAML front matter for the Space"
    front = yaml.safe_load(match.group(1))
    manifest = yaml.safe_load((ROOT / "spaces.yaml").read_text())
    space = manifest["space"]
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().split() if "==" in line)
    for key in ("title", "sdk", "app_file", "python_version", "suggested_hardware"):
        assert str(front[key]) == str(space[key]), key
    assert str(front["sdk_version"]) == str(space["sdk_version"]) == pins["gradio"]
    assert (ROOT / space["app_file"]).is_file()
    hub_specs = {c["space"]["spec"][4:].rsplit(":", 1)[0] for c in manifest["catalogues"]
                 if "space" in c and c["space"]["spec"].startswith("hub:")}
    assert hub_specs and hub_specs <= set(front.get("datasets", []))
    heads = {c["space"]["head"][4:] for c in manifest["catalogues"]
             if "space" in c and str(c["space"].get("head", "")).startswith("hub:")}
    assert heads <= set(front.get("models", []))
    for package in ("gradio_client", "torch", "annoy", "PyYAML"):
        assert package in pins, f"requirements.txt should pin {package}"


def test_deploy_uploads_tracked_files_and_is_a_clear_error_offline(tmp_path, capsys):
    """`python -m retrieval deploy`: the Space gets what git tracks minus tests
    and CI (never a local run's caches or images); offline, it says why."""
    import subprocess

    from retrieval.cli.deploy import space_files
    from retrieval.cli.main import main as retrieval_main

    files = space_files()
    assert {"app.py", "README.md", "requirements.txt", "spaces.yaml", "retrieval/search/recommender.py"} <= set(files)
    assert not [f for f in files if f.startswith(("tests/", ".ci/", "runs/")) or f.endswith(".jpg")]
    with pytest.raises(LookalikeError, match="not a git checkout"):
        space_files(tmp_path)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "app.py").write_text("")
    subprocess.run(["git", "-C", str(tmp_path), "add", "app.py"], check=True)
    with pytest.raises(LookalikeError, match="README.md, requirements.txt, spaces.yaml"):
        space_files(tmp_path)
    assert retrieval_main(["deploy", "--space", "someone/lookalike"]) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err


def test_deploy_creates_a_gradio_space_with_the_tracked_files(monkeypatch):
    """The online path, against a stand-in for huggingface_hub.HfApi."""
    import huggingface_hub

    from retrieval.cli.deploy import deploy, space_files

    calls = []

    class RecordingApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload", kwargs))

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert deploy("someone/lookalike") == "https://huggingface.co/spaces/someone/lookalike"
    (_, repo_id, create), (_, upload) = calls
    assert repo_id == "someone/lookalike" and create["repo_type"] == "space" and create["space_sdk"] == "gradio"
    assert upload["repo_type"] == "space" and upload["allow_patterns"] == space_files()
    assert Path(upload["folder_path"]) == ROOT


def test_thumbnails_are_small_and_carry_no_exif(tmp_path):
    """Result images are made once from the validated decode: a photo stored
    as JPEG or larger than a thumbnail becomes a JPEG of at most 256 px, a
    small image of another format a PNG; none keeps its file's EXIF."""
    from retrieval.data.catalogues import load_catalogue
    from retrieval.search.thumbnails import Thumbnails, data_url

    (tmp_path / "shop" / "a").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x8827] = 400  # ISO speed: any EXIF tag will do
    Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / "shop" / "a" / "small.jpg", exif=exif)
    Image.new("RGB", (600, 400), (10, 200, 10)).save(tmp_path / "shop" / "a" / "large.png")
    Image.new("RGB", (64, 48), (10, 10, 200)).save(tmp_path / "shop" / "a" / "small.bmp")
    catalogue = load_catalogue(str(tmp_path / "shop"))
    thumbnails = Thumbnails(tmp_path / "thumbs")
    paths = {catalogue.ids[row]: thumbnails.path(catalogue, row) for row in range(len(catalogue))}
    assert sorted(paths) == ["a/large", "a/small.bmp", "a/small.jpg"]  # same stem: ids keep their suffix
    urls = {item: data_url(path) for item, path in paths.items()}
    assert urls["a/small.jpg"].startswith("data:image/jpeg;base64,") and decode(urls["a/small.jpg"]).size == (64, 48)
    assert b"Exif" not in base64.b64decode(urls["a/small.jpg"].split(",", 1)[1])
    assert urls["a/large"].startswith("data:image/jpeg;base64,") and decode(urls["a/large"]).size == (256, 171)
    assert urls["a/small.bmp"].startswith("data:image/png;base64,") and decode(urls["a/small.bmp"]).size == (64, 48)
    before = paths["a/large"].stat().st_mtime_ns
    assert thumbnails.path(catalogue, catalogue.ids.index("a/large")).stat().st_mtime_ns == before  # made once


def test_page_is_built_without_importing_torchvision_or_timm(class_folders):
    """The page comes up while the backbone is made in the background: opening
    a catalogue (auto backbone, no head) and building the UI import neither
    torchvision nor timm (~3.5 s of a start-up)."""
    script = ("import sys\nfrom ui import page\n"
              "from retrieval.search.service import CatalogueConfig, Service\n"
              f"service = Service([CatalogueConfig('shop', {str(class_folders)!r})])\n"
              "page.build_demo(service)\n"
              "print(service.get('shop').state, sorted(m for m in ('torchvision', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == "building []"


def test_python_app_py_serves_a_folder_end_to_end(class_folders, tmp_path):
    """`python app.py --no-manifest --catalogue DIR` as a user runs it: the page
    answers, the catalogue is built (in the main thread, after the page is up)
    and /recommend finds a catalogue image first."""
    log = tmp_path / "app.log"
    args = ["--no-manifest", "--catalogue", str(class_folders), "--backbone", "tiny_test"]
    with log.open("w") as stderr:
        try:
            with running_app(args, 180, os.environ | {"LOOKALIKE_CACHE": str(tmp_path / "cache")},
                             stderr) as (client, _):
                status = client.predict(api_name="/catalogues")[0]
                assert status["status"] == "ready" and status["items"] == 12
                answer = client.predict(handle_file(str(class_folders / "blue" / "blue3.png")), "shop", 4,
                                        api_name="/recommend")
        except RuntimeError as e:
            pytest.fail(f"{e}\n{log.read_text()}")
    assert answer["pretrained"]["results"][0]["id"] == "blue/blue3"


def test_a_missing_head_is_trained_by_the_build_with_progress(tmp_path):
    """The demo's first start: the page is up before any work; the build then
    extracts features and trains the configured head that does not exist yet
    (progress on the page), and serves it."""
    from retrieval.progress import Progress

    shop = tmp_path / "shop"
    rng = np.random.default_rng(0)
    for c in range(10):
        (shop / f"class{c}").mkdir(parents=True)
        colour = rng.integers(0, 255, 3)
        for i in range(4):
            pixels = np.clip(colour + rng.normal(0, 20, (32, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(shop / f"class{c}" / f"{i}.png")
    run_dir = tmp_path / "runs" / "shop"
    seen = []

    def trainer(rec, output, progress):
        seen.append(progress.snapshot()["phase"])  # features were extracted before training
        app.train_missing_head(rec, output, progress)
        seen.append(progress.snapshot())

    service = Service([CatalogueConfig("shop", str(shop), "tiny_test", head=str(run_dir))],
                      cache_dir=tmp_path / "cache", trainer=trainer)
    assert service.status()[0]["progress"] is None and service.get("shop").head is None
    service.build_all()
    served = service.get("shop")
    assert served.ready and served.finetuned is not None and (run_dir / "head.safetensors").is_file()
    assert seen[0] == "building the index"
    assert seen[1]["phase"] == "fine-tuning a head" and seen[1]["unit"] == "epochs" and seen[1]["done"] >= 1
    answer = service.similar("shop", service.item_id("shop", 0), 3)
    assert answer["finetuned"]["embedding"] == "tiny_test + shop" and len(answer["finetuned"]["results"]) == 3

    progress = Progress()
    progress.start("extracting features", 4052)
    progress.advance(1013)
    text = ui_format.progress_text(progress.snapshot())
    assert text.startswith("extracting features ▓▓░░░░░░░░ 1,013 / 4,052 images (25%)")


def rest_call(url: str, data: list, name="recommend") -> tuple:
    """(status code, event stream text) of a raw REST call, as curl users make it."""
    api = url + "gradio_api/"
    posted = httpx.post(api + f"call/{name}", json={"data": data}, timeout=60)
    if posted.status_code != 200:
        return posted.status_code, posted.text
    return 200, httpx.get(api + f"call/{name}/{posted.json()['event_id']}", timeout=60).text


def rest_upload(url: str, path: Path) -> dict:
    uploaded = httpx.post(url + "gradio_api/upload", files={"files": path.read_bytes()}, timeout=60).json()[0]
    return {"path": uploaded, "meta": {"_type": "gradio.FileData"}}


def test_rest_route_leaves_no_session_behind(served):
    """Each raw REST call opens a gradio session that kept a copy of its whole
    answer (1.1 -> 2.5 GB over seven minutes of 32 users); idle ones are
    forgotten, browser tabs (announced by the page's load event) are not."""
    holder, sweeper = served["demo"].state_holder, served["demo"].sweeper
    image = rest_upload(served["url"], served["shop"] / "red" / "red1.png")
    before = set(holder.session_data)
    for _ in range(5):
        code, stream = rest_call(served["url"], [image, "shop", 3, ""])
        assert code == 200 and "event: complete" in stream
    assert len(set(holder.session_data) - before) >= 5
    sweeper.page_loaded("a-browser-tab")
    holder["a-browser-tab"]
    sweeper.sweep(now=time.time() + 3600)
    assert set(holder.session_data) == {"a-browser-tab"}


def test_rest_route_edges_are_one_clear_message(served, caplog):
    """What gradio alone answered with a traceback in the log and `{"error":
    null}` (a path not uploaded, an optional argument left out) or a 500 (an
    unknown endpoint)."""
    image = rest_upload(served["url"], served["shop"] / "red" / "red1.png")
    code, stream = rest_call(served["url"], [image, "shop", 3])  # no backbone: its default, as gradio_client
    assert code == 200 and "event: complete" in stream
    with caplog.at_level(logging.INFO, logger="lookalike.app"):
        code, stream = rest_call(served["url"], [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
                                                 "shop", 3, ""])
        assert code == 200 and edge.NOT_UPLOADED in stream and "null" not in stream
        for k in ("NaN", "Infinity"):
            posted = httpx.post(served["url"] + "gradio_api/call/recommend", timeout=60,
                                headers={"content-type": "application/json"},
                                content=f'{{"data": [{json.dumps(image)}, "shop", {k}, ""]}}')
            answer = httpx.get(served["url"] + f"gradio_api/call/recommend/{posted.json()['event_id']}").text
            assert "k must be a whole number from 1 to 50" in answer
        code, text = rest_call(served["url"], [1], name="no-such-endpoint")
        assert code == 404 and "no such endpoint" in text
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.name == "lookalike.app"] == ["refused"] * 4
    assert all(r.exc_info is None for r in caplog.records)


def test_an_upload_asked_again_is_not_embedded_again(served, monkeypatch):
    """The page asks again with the same upload on each 👍/👎: its embeddings
    are remembered by content (a path, its bytes or the decoded image alike),
    and another image still gets its own pass."""
    service, shop = served["service"], served["shop"]
    embedder = service.get("shop").pretrained.embedder
    passes, features = [], embedder.features
    monkeypatch.setattr(embedder, "features", lambda images, *a, **k: passes.append(len(images)) or
                        features(images, *a, **k))
    red, blue = shop / "red" / "red2.png", shop / "blue" / "blue1.png"
    first = service.answer(Query(images=[str(red)], k=4), "shop")
    again = service.answer(Query(images=[red.read_bytes()], k=4), "shop")
    assert [m.id for m in again.sides["pretrained"].results] == [m.id for m in first.sides["pretrained"].results]
    service.answer(Query(images=[str(red)], unlike_items=["cyan/cyan1"], k=4), "shop")  # a 👎
    assert passes == [1]
    service.answer(Query(images=[str(blue)], k=4), "shop")
    assert passes == [1, 1]


def test_remembered_uploads_follow_the_models_that_embedded_them():
    """A head that arrives after an upload was embedded (the app trains it
    once the page is up) gets the upload embedded again, for both sides."""
    from retrieval.search.uploads import UploadEmbeddings

    uploads, made = UploadEmbeddings(kept=2), []
    image = Image.new("RGB", (8, 8), (200, 30, 30))

    def embed(im):
        made.append(im)
        return {"pretrained": len(made)}

    assert uploads.get(("p", None), image, embed) == uploads.get(("p", None), image.copy(), embed) == {"pretrained": 1}
    assert uploads.get(("p", "f"), image, embed) == {"pretrained": 2}  # a fine-tuned side now too
    for colour in ((1, 2, 3), (4, 5, 6)):  # two more uploads: the first is forgotten
        uploads.get(("p", "f"), Image.new("RGB", (8, 8), colour), embed)
    uploads.get(("p", "f"), image, embed)
    assert len(made) == 5
