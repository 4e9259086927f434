"""The Embedder and its run folder: one factory, config.json written and read
by one module with a format version, heads that refuse foreign features."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from retrieval.embedding.embedder import Embedder, create_embedder, load_head, trained_head
from retrieval.embedding.run_dir import CONFIG_FILE
from retrieval.errors import LookalikeError
from retrieval.models.backbones import create_backbone
from retrieval.models.heads import EmbeddingHead

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(tmp_path):
    """A saved run of a (randomly initialised) head on tiny_test features."""
    backbone = create_backbone("tiny_test")
    torch.manual_seed(0)
    module = EmbeddingHead(backbone.dim, 8, 4)
    module.whitening.normal_()
    Embedder(backbone, head=trained_head(module, backbone, "run")).save_pretrained(tmp_path / "run", {"loss": "x"})
    return tmp_path / "run", module


def images(n=3):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(n)]


def test_from_pretrained_gives_the_saved_embeddings(run):
    folder, module = run
    embedder = Embedder.from_pretrained(folder)
    assert embedder.name == "tiny_test + run" and embedder.views == ("original", "mirror")
    features = embedder.features(images())
    with torch.no_grad():
        per_view = torch.nn.functional.normalize(module(torch.from_numpy(features)), dim=-1)
    expected = torch.nn.functional.normalize(per_view.mean(1), dim=-1).numpy()
    assert np.allclose(embedder.embed(images()), expected, atol=1e-5)
    assert embedder.fingerprint != create_embedder("tiny_test").fingerprint
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["format_version"] == 2 and config["training"] == {"loss": "x"}
    assert config["embedder"]["backbone"]["preprocessing"]["size"] == [32, 32]


def test_format_1_runs_are_upgraded(run):
    """Runs written before config formats were numbered still load, to the
    same embeddings."""
    folder, _ = run
    new = json.loads((folder / CONFIG_FILE).read_text())
    head = new["embedder"]["head"]
    (folder / CONFIG_FILE).write_text(json.dumps({
        "name": "run", "loss": "supcon", "backbone": "tiny_test", "weights": "tiny_test:seed0",
        "preprocessing": "resize-whole-32x32-bicubic/mean(0.5, 0.5, 0.5)/std(0.5, 0.5, 0.5)/avg-stages2,3-of-4/"
                         "views-orig-mirror",
        "in_dim": head["in_dim"], "projection_dim": head["projection_dim"], "whitening_dim": head["whitening_dim"],
        "unfreeze": 0, "tail_start": None}))
    old = load_head(folder)
    assert old.config.to_json()["embedder"] == new["embedder"] and old.config.training["loss"] == "supcon"
    assert np.array_equal(create_embedder("tiny_test", old).embed(images()),
                          Embedder.from_pretrained(folder).embed(images()))


@pytest.mark.parametrize("content, message", [
    ('{"format_version": 99}', "config format 99, this Lookalike reads 2"),
    ("{not json", "not a valid run config"),
    ('{"format_version": 2, "embedder": {}}', "not a valid run config"),
    ("[1, 2]", "not a valid run config"),
])
def test_bad_configs_are_clear_errors(run, content, message):
    folder, _ = run
    (folder / CONFIG_FILE).write_text(content)
    with pytest.raises(LookalikeError, match=message):
        load_head(folder)


def test_head_refuses_features_of_another_backbone(run):
    folder, _ = run
    with pytest.raises(LookalikeError, match="head run was trained on tiny_test features"):
        create_embedder(create_backbone("efficientnet_lite0", pretrained=False), folder)


def test_importing_the_project_changes_no_global_setting():
    """Side effects belong to entry points: importing every module leaves
    PIL's decompression limit, matplotlib's backend and malloc alone."""
    script = """
import PIL.Image, sys
from retrieval.cli import allocator
calls = []
allocator.keep_freed_memory = lambda: calls.append(1)  # before anything imports it
limit = PIL.Image.MAX_IMAGE_PIXELS
import app, finetune.cli, finetune.plots, retrieval.cli.main, retrieval.search.service, retrieval.data.images
assert PIL.Image.MAX_IMAGE_PIXELS == limit, PIL.Image.MAX_IMAGE_PIXELS
assert "matplotlib.pyplot" not in sys.modules
from retrieval.models.backbones import create_backbone
create_backbone("tiny_test")
assert not calls
print("clean")
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "clean", out.stderr


def test_save_pretrained_writes_a_run_and_never_replaces_a_folder_it_did_not_write(run, tmp_path):
    folder, module = run
    backbone = create_backbone("tiny_test")
    embedder = Embedder(backbone, head=trained_head(module, backbone, "run"))
    embedder.save_pretrained(folder, {"loss": "y"})  # its own run: replaced
    assert json.loads((folder / CONFIG_FILE).read_text())["training"] == {"loss": "y"}
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "precious.txt").write_text("keep me")
    with pytest.raises(LookalikeError):
        embedder.save_pretrained(theirs)
    assert sorted(p.name for p in theirs.iterdir()) == ["precious.txt"]
