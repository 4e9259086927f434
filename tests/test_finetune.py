import json

import numpy as np
import pytest
import torch
from PIL import Image

from finetune.cli import main as finetune_main
from finetune.saving import save_run
from finetune.train import TrainConfig, train_head
from retrieval.cli.main import main as retrieval_main
from retrieval.embedding.embedder import load_head
from retrieval.errors import LookalikeError
from retrieval.models.backbones import create_backbone


def synthetic_views(n_classes=30, per_class=8, dim=32, seed=0):
    """Classes differ in an 8-d subspace, drowned by strong shared nuisance in
    the other dims: a linear head that learns to ignore the nuisance
    generalises to unseen classes; raw features and a random projection don't."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((n_classes, dim))
    centres[:, :8] = rng.normal(0, 1, (n_classes, 8))
    labels = np.repeat(np.arange(n_classes), per_class)
    noise = rng.normal(0, 0.15, (len(labels), 2, dim))
    noise[..., 8:] *= 2.0 / 0.15
    return (centres[labels][:, None, :] + noise).astype(np.float32), labels


def test_training_lowers_loss_and_beats_untrained_head():
    views, labels = synthetic_views()
    config = TrainConfig(epochs=6, whitening="none", projection_dim=16, batch_size=32, patience=6, lr=1e-2)
    result = train_head(views, labels, config)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.5
    assert result.best["epoch"] > 0
    assert result.best["recall_at_1"] > result.untrained["recall_at_1"] + 0.3
    assert result.best["map_at_r"] > result.baselines["pretrained"]["map_at_r"] + 0.1
    assert set(result.split.validation_classes).isdisjoint(result.split.train_classes)


def test_same_seed_same_run():
    views, labels = synthetic_views()
    config = TrainConfig(epochs=2, whitening="learned", whitening_dim=16, projection_dim=16, batch_size=32)
    first, second = train_head(views, labels, config), train_head(views, labels, config)
    assert first.history == second.history
    for a, b in zip(first.head.state_dict().values(), second.head.state_dict().values()):
        assert torch.equal(a, b)


def test_run_dir_reloads_to_identical_embeddings(tmp_path):
    views, labels = synthetic_views()
    result = train_head(views, labels, TrainConfig(epochs=2, whitening_dim=16, projection_dim=16, batch_size=32))
    names = [f"class {i}" for i in range(30)]
    save_run(tmp_path / "run", result, create_backbone("tiny_test"), {"loss": "supcon", "catalogue": "synthetic"},
             names)
    head = load_head(tmp_path / "run")
    x = views.reshape(-1, views.shape[2])
    with torch.no_grad():
        expected = result.head(torch.from_numpy(x)).numpy()
    assert np.array_equal(head(x), expected)
    assert {"head.safetensors", "config.json", "metrics.json", "curves.png", "README.md"} <= {
        p.name for p in (tmp_path / "run").iterdir()}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["validation_classes"] == [f"class {i}" for i in range(24, 30)]
    assert {"pretrained", "whitening", "best", "epochs"} <= metrics.keys()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_training():
    views, labels = synthetic_views()
    result = train_head(views, labels, TrainConfig(epochs=2, projection_dim=16, whitening_dim=16, batch_size=32),
                        device=torch.device("cuda"))
    assert len(result.history) == 2


@pytest.fixture
def shapes(tmp_path):
    """Six classes of five generated images: a shape per class, random colours."""
    from PIL import ImageDraw

    root = tmp_path / "shapes"
    rng = np.random.default_rng(1)
    for c in range(6):
        (root / f"shape{c}").mkdir(parents=True)
        for i in range(5):
            image = Image.new("RGB", (64, 64), tuple(int(v) for v in rng.integers(0, 255, 3)))
            draw = ImageDraw.Draw(image)
            colour = tuple(int(v) for v in rng.integers(0, 255, 3))
            box = [8 + i, 8, 56 - i, 56]
            [draw.ellipse, draw.rectangle, draw.chord, draw.pieslice, draw.line, draw.point][c](
                box, fill=colour, **({"start": 0, "end": 180} if c in (2, 3) else {}))
            image.save(root / f"shape{c}" / f"{i}.png")
    return root


def test_cli_trains_and_retrieval_uses_the_head(shapes, tmp_path, capsys):
    """finetune writes a run; evaluate and search with --head embed through
    it: their numbers are the head's (computed here from its module), not the
    pretrained features'."""
    from retrieval.data.catalogues import load_catalogue
    from retrieval.embedding.embedder import create_embedder
    from retrieval.evaluation.metrics import retrieval_metrics
    from retrieval.search.recommender import Recommender
    from retrieval.vectors import l2_normalise

    run, cache = tmp_path / "run", str(tmp_path / "cache")
    args = ["--catalogue", str(shapes), "--backbone", "tiny_test", "--epochs", "2",
            "--output", str(run), "--cache-dir", cache, "--validation-fraction", "0.34"]
    assert finetune_main(args) == 0
    assert "fine-tuned (epoch" in capsys.readouterr().out
    assert finetune_main(args) == 2
    assert "already holds a fine-tuned head" in capsys.readouterr().err

    # what the head makes of the cached features, computed without the engine's embedding code
    pretrained = Recommender(load_catalogue(str(shapes)), create_embedder("tiny_test"), cache)
    features, rows = pretrained.features()
    labels = [pretrained.catalogue.labels[r] for r in rows]
    module = load_head(run).module
    with torch.no_grad():
        per_view = torch.nn.functional.normalize(module(torch.from_numpy(features)), dim=-1).numpy()
    expected = l2_normalise(per_view.mean(axis=1))
    with_head, without = retrieval_metrics(expected, labels, progress=False), pretrained.catalogue_embeddings()
    plain = retrieval_metrics(without[0], labels, progress=False)
    assert with_head["map_at_r"] != plain["map_at_r"]

    out = tmp_path / "eval.json"
    assert retrieval_main(["evaluate", "--catalogue", str(shapes), "--head", str(run),
                           "--cache-dir", cache, "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["head"] == "run" and metrics["backbone"] == "tiny_test" and metrics["n_images"] == 30
    assert metrics["map_at_r"] == pytest.approx(with_head["map_at_r"], abs=1e-6)
    assert metrics["recall_at_1"] == pytest.approx(with_head["recall_at_1"], abs=1e-6)
    capsys.readouterr()
    query = shapes / "shape0" / "1.png"
    assert retrieval_main(["search", "--catalogue", str(shapes), "--head", str(run), "--cache-dir", cache,
                           "--image", str(query), "--k", "3", "--exact", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results[0]["id"] == "shape0/1" and results[0]["score"] == pytest.approx(1.0, abs=1e-3)
    second = list(rows).index(pretrained.catalogue.ids.index(results[1]["id"]))
    mine = list(rows).index(pretrained.catalogue.ids.index("shape0/1"))
    assert results[1]["score"] == pytest.approx(float(expected[mine] @ expected[second]), abs=1e-4)
    assert results[1]["score"] != pytest.approx(float(without[0][mine] @ without[0][second]), abs=1e-3)


def test_bad_arguments_give_clear_errors(shapes, tmp_path, capsys):
    with pytest.raises(SystemExit):
        finetune_main(["--catalogue", str(shapes), "--loss", "nonsense"])
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err

    for extra in range(1, 5):
        (shapes / "shape5" / f"{extra}.png").unlink()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "nothing").mkdir()
    for catalogue, message in [(shapes, "fewer than 2 images"), (tmp_path / "empty", "no image files")]:
        assert finetune_main(["--catalogue", str(catalogue), "--backbone", "tiny_test",
                              "--output", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_missing_head_and_offline_push_are_clear_errors(tmp_path):
    with pytest.raises(LookalikeError, match="not a fine-tuning run"):
        load_head(tmp_path)
    from finetune.hub import push_run

    with pytest.raises(LookalikeError, match="HF_HUB_OFFLINE"):
        push_run(tmp_path, "someone/head")
    with pytest.raises(LookalikeError, match="hub:someone/head: head could not be fetched"):
        load_head("hub:someone/head")


@pytest.mark.parametrize("name, pooled_before", [("tiny_test", 0), ("tiny_test_pair", 48)])
def test_unfreeze_trains_the_last_stages_and_retrieval_runs_them(shapes, tmp_path, name, pooled_before):
    """--unfreeze: the last stages train from their cached inputs, and a saved
    run gives the same embeddings from whole images as training saw; a side
    network's features (tiny_test_pair) are cached with the inputs and stay."""
    import copy

    from finetune.inputs import StageInputs
    from retrieval.data.catalogues import load_catalogue
    from retrieval.embedding.embedder import create_embedder
    from retrieval.extract.features import stage_inputs
    from retrieval.search.recommender import Recommender

    catalogue, embedder = load_catalogue(str(shapes)), create_embedder(name)
    backbone = embedder.backbone
    start = 2  # the last two of tiny_test's four stages train
    maps, pooled, rows = stage_inputs(catalogue, embedder, start, tmp_path / "cache")
    assert maps.shape[:2] == (30, 2) and maps.dtype == np.float16 and pooled.shape == (30, 2, pooled_before)
    tail = copy.deepcopy(backbone.model.tail(start)).requires_grad_(True)
    before = copy.deepcopy(tail.state_dict())
    labels = [catalogue.labels[r] for r in rows]
    config = TrainConfig(epochs=3, projection_dim=16, whitening="none", batch_size=8, images_per_class=2,
                         validation_fraction=0.34, stage_lr=1e-2, patience=3)
    result = train_head(StageInputs(maps, pooled, tail), labels, config, names=catalogue.label_names)
    assert len(result.history) == 3 and result.best["epoch"] > 0
    trained = result.head.tail.state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in before if trained[k].is_floating_point())

    save_run(tmp_path / "tail", result, backbone, {"loss": "supcon", "unfreeze": 2}, catalogue.label_names)
    rec = Recommender.open(catalogue, backbone=backbone, head=str(tmp_path / "tail"), cache_dir=tmp_path / "cache")
    assert rec.embedder.backbone.weights.startswith(f"{name}:seed0+tail:") and rec.embedder.backbone is not backbone
    from_images = rec.features()[0]
    from_maps = StageInputs(maps, pooled, result.head.tail).all_views(np.arange(30), torch.device("cpu")).numpy()
    assert np.allclose(from_images, from_maps, atol=2e-2 * np.abs(from_maps).max())  # maps cached as float16
    assert not np.allclose(from_images, Recommender(catalogue, embedder, cache_dir=tmp_path / "cache").features()[0],
                           atol=1e-3)
    results = rec.build().search(shapes / "shape2" / "3.png", k=3)
    assert results[0].id == "shape2/3" and results[0].score == pytest.approx(1.0, abs=1e-3)


def test_unfreeze_refuses_unstaged_backbones_and_bad_counts(shapes, tmp_path, capsys):
    common = ["--catalogue", str(shapes), "--output", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c")]
    assert finetune_main([*common, "--backbone", "tiny_test", "--unfreeze", "4"]) == 2
    assert "--unfreeze must be 0..3 for tiny_test, not 4" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_learned_whitening_is_within_class_whitening_then_pca():
    """fit_whitening("learned") solves one generalised eigenproblem: it must
    give the projection its definition gives (whiten the shrunk within-class
    covariance, then keep the top principal directions), up to a rotation
    inside the kept space, which cosines don't see."""
    from retrieval.models import whitening

    views, labels = synthetic_views(per_class=12)
    x = views.reshape(-1, views.shape[2]).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat(labels, 2)
    class_means = np.stack([x[y == c].mean(0) for c in np.unique(y)])
    within = x - class_means[np.searchsorted(np.unique(y), y)]
    values, vectors = np.linalg.eigh(whitening._shrunk(within.T @ within / len(x), whitening.WITHIN_CLASS_SHRINK))
    inverse_sqrt = (vectors / np.sqrt(values)) @ vectors.T
    whitened = (x - x.mean(0)) @ inverse_sqrt
    _, pcs = np.linalg.eigh(whitened.T @ whitened / len(x))
    expected = whitened @ pcs[:, ::-1][:, :8]

    mean, projection = whitening.fit_whitening(torch.as_tensor(x), torch.as_tensor(y), 8)
    ours = (x - mean.double().numpy()) @ projection.double().numpy().T

    def cosines(z):
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        return z @ z.T

    assert np.allclose(cosines(ours), cosines(expected), atol=1e-4)


def test_learned_whitening_of_classes_that_never_vary_is_finite():
    """One image per class (a shop whose every product is its own class, its
    views identical) leaves no within-class spread to whiten: still finite."""
    from retrieval.models.whitening import fit_whitening

    x = torch.randn(10, 16, generator=torch.Generator().manual_seed(0))
    mean, projection = fit_whitening(torch.cat([x, x]), torch.arange(10).repeat(2), 8)
    assert projection.shape == (8, 16) and torch.isfinite(projection).all()
