"""`python -m retrieval report` (#14): every section on a small generated
catalogue, metrics in [0, 1], perfect and random embeddings scoring as they
must, the autoencoder learning, and the maps placing a query."""

import json
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from finetune.cli import main as finetune_main
from retrieval.cli.main import main as retrieval_main
from retrieval.data.catalogues import load_catalogue
from retrieval.errors import LookalikeError
from retrieval.report import autoencoder as ae
from retrieval.report import embeddings as report_embeddings
from retrieval.report.maps import query_position
from retrieval.report.metrics import measure
from retrieval.report.view import open_report
from retrieval.report.writer import check_output

SHAPES = ("ellipse", "rectangle", "triangle", "bar")
EMBEDDINGS = ("handcrafted", "autoencoder", "tiny_test", "tiny_test + PCA whitening", "tiny_test + head")


def draw(shape: str, rng) -> Image.Image:
    """A dark shape at a random place on a random light background."""
    image = Image.new("RGB", (64, 48), tuple(int(v) for v in rng.integers(140, 255, 3)))
    pen, (x, y) = ImageDraw.Draw(image), rng.integers(6, 22, 2)
    colour = tuple(int(v) for v in rng.integers(0, 110, 3))
    if shape == "ellipse":
        pen.ellipse([x, y, x + 30, y + 20], fill=colour)
    elif shape == "rectangle":
        pen.rectangle([x, y, x + 30, y + 20], fill=colour)
    elif shape == "triangle":
        pen.polygon([(x, y + 20), (x + 15, y), (x + 30, y + 20)], fill=colour)
    else:
        pen.rectangle([x, y + 8, x + 36, y + 13], fill=colour)
    return image


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Four classes of five generated images: a shape per class."""
    root = tmp_path_factory.mktemp("report") / "shop"
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        (root / shape).mkdir(parents=True)
        for i in range(5):
            draw(shape, rng).save(root / shape / f"{shape}{i}.png")
    return root


@pytest.fixture(scope="module")
def written(shop, tmp_path_factory):
    """A report with a head, a saved autoencoder run and a backbone whose
    weights can't be had (resnet18, made unavailable here)."""
    base = tmp_path_factory.mktemp("report-out")
    cache, head, autoencoder = base / "cache", base / "head", base / "ae"
    assert finetune_main(["--catalogue", str(shop), "--backbone", "tiny_test", "--epochs", "2", "--output", str(head),
                          "--cache-dir", str(cache), "--validation-fraction", "0.5", "--projection-dim", "8",
                          "--whitening-dim", "16", "--batch-size", "8", "--images-per-class", "2"]) == 0
    assert finetune_main(["--method", "autoencoder", "--catalogue", str(shop), "--epochs", "2",
                          "--output", str(autoencoder)]) == 0
    real = report_embeddings.create_backbone

    def create(name, **kwargs):
        if name == "resnet18":
            raise LookalikeError("resnet18: ImageNet weights could not be downloaded (offline)")
        return real(name, **kwargs)

    report_embeddings.create_backbone = create
    try:
        assert retrieval_main(["report", "--catalogue", str(shop), "--backbones", "tiny_test,resnet18",
                               "--head", str(head), "--autoencoder", str(autoencoder), "--timing-images", "4",
                               "--examples", "2",
                               "--output", str(base / "report"), "--cache-dir", str(cache)]) == 0
    finally:
        report_embeddings.create_backbone = real
    return base / "report"


def test_report_has_every_section(written):
    text = (written / "REPORT.md").read_text()
    for section in ("## Embeddings", "### Retrieval", "### kNN classification (k = 5", "### Cost",
                    "### Not compared", "## Recall@K", "## Most confused classes", "## 2-D maps",
                    "## Example queries", "## kNN classification per class"):
        assert section in text, section
    assert "python -m retrieval report --catalogue" in text and "--head" in text
    assert "**resnet18**: resnet18: ImageNet weights could not be downloaded" in text
    tables = text.split("### Retrieval")[1].split("## Recall@K")[0]
    for name in EMBEDDINGS:  # a row in the retrieval, kNN and cost tables
        assert len(re.findall(rf"^\| {re.escape(name)} \|", tables, re.M)) == 3, name
    plots = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(plots) == 2 + len(EMBEDDINGS) + 2  # recall, confusion, a map each, two examples
    for file in plots:
        with Image.open(written / file) as image:
            assert image.format == "PNG" and min(image.size) > 200


def test_every_metric_lies_in_unit_interval(written):
    report = json.loads((written / "report.json").read_text())
    assert [e["name"] for e in report["embeddings"]] == list(EMBEDDINGS)
    for e in report["embeddings"]:
        m, knn = e["metrics"], e["metrics"]["knn"]
        values = [m[k] for k in ("recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8", "map_at_r",
                                 "precision_at_1")]
        values += [*m["recall_curve"].values(), knn["accuracy"], e["cost"]["annoy_recall_at_10"]]
        values += [avg[k] for avg in (knn["macro"], knn["weighted"]) for k in ("precision", "recall", "f1")]
        values += [c[k] for c in knn["per_class"] for k in ("precision", "recall", "f1")]
        assert all(0 <= v <= 1 for v in values), e["name"]
        assert len(knn["per_class"]) == 4 and e["cost"]["images_per_second"] > 0 and e["cost"]["index_bytes"] > 0


def test_one_hot_labels_score_one_and_random_lands_near_chance():
    labels = np.repeat(np.arange(10), 20)
    names = [f"class {i}" for i in range(10)]
    perfect, _, _ = measure(np.eye(10)[labels], labels, names)
    scores = [perfect[k] for k in ("recall_at_1", "recall_at_8", "map_at_r", "precision_at_1")]
    scores += [perfect["knn"]["accuracy"], perfect["knn"]["macro"]["f1"], perfect["knn"]["weighted"]["f1"]]
    assert scores == pytest.approx([1.0] * len(scores))
    random, _, _ = measure(np.random.default_rng(1).normal(size=(200, 64)), labels, names)
    assert 0.02 < random["precision_at_1"] < 0.2 and random["map_at_r"] < 0.15  # chance: 1/10
    assert random["knn"]["accuracy"] < 0.2 and random["knn"]["macro"]["f1"] < 0.2


def test_autoencoder_reconstruction_loss_goes_down(tmp_path):
    rng = np.random.default_rng(0)
    data = ae.pixels([draw(SHAPES[i % 4], rng) for i in range(64)])
    result = ae.train_autoencoder(data, ae.AutoencoderConfig(epochs=6, batch_size=16, lr=3e-3))
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.6 * losses[0]
    ae.save_autoencoder(tmp_path / "run", result, ae.AutoencoderConfig(), {"catalogue": "generated"})
    codes = ae.load_autoencoder(tmp_path / "run").encode(data)
    assert codes.shape == (64, ae.LATENT) and np.allclose(codes, result.model.encode(data), atol=1e-6)


def test_report_trains_an_autoencoder_without_a_run(shop):
    embedding = report_embeddings.autoencoder_embedding(load_catalogue(str(shop)), None, epochs=1)
    assert embedding.vectors.shape == (20, ae.LATENT) and embedding.prepared_seconds > 0
    assert "trained here without labels" in embedding.note


def test_query_is_placed_on_the_maps(written):
    view = open_report(written)
    xy = view.maps["tiny_test"]
    assert np.array_equal(query_position(view.ids, xy, [], [], query_id=view.ids[3]), xy[3])  # an item: its place
    between = query_position(view.ids, xy, [view.ids[0], view.ids[1], "not-mapped"], [0.9, 0.3])
    assert np.allclose(between, (0.9 * xy[0] + 0.3 * xy[1]) / 1.2)
    assert query_position(view.ids, xy, ["not-mapped"], [0.9]) is None
    image = view.query_map("tiny_test", view.ids[:3])
    assert image.size[0] > 200 and view.query_map("no such embedding", view.ids[:3]) is None
    assert len(view.plots()) == 2 + len(EMBEDDINGS) + 2 and "tiny_test + head" in view.markdown()


def test_output_holding_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(LookalikeError, match="holds files but no report"):
        check_output(tmp_path)
