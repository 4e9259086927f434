import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from retrieval.backbones import _REGISTRY, _TORCHVISION, fold_batchnorm


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18", "efficientnet_b0", "inception_v3"])
def test_folding_batchnorm_keeps_the_outputs(name):
    """BatchNorm statistics folded into the convolutions before them: the same
    features, whatever the statistics (random ones here, so a BatchNorm folded
    into the wrong convolution would show)."""
    torch.manual_seed(0)
    model, _ = _REGISTRY[name].build(True)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_(1, 0.2)
            module.bias.data.normal_(0, 0.2)
    model.eval()
    x = torch.randn(2, 3, *_REGISTRY[name].size)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batchnorm(model)(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert torch.allclose(folded, expected, atol=1e-4 * expected.abs().max())


PAGE_FAULTS_OF_REPEATED_PASSES = """
import resource, torch
from retrieval.backbones import create_backbone
backbone = create_backbone("efficientnet_lite0", device="cpu", random_weights=True)
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
    """After create_backbone, a second batch reuses the first one's memory (with
    glibc's default thresholds it page-faults ~65,000 fresh pages each time)."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", PAGE_FAULTS_OF_REPEATED_PASSES], cwd=root,
                         capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) < 1000


def test_torchvision_weight_file_names_are_torchvisions():
    import torchvision.models as models

    for name, (enum, file, _, _) in _TORCHVISION.items():
        assert Path(getattr(models, enum).IMAGENET1K_V1.url).name == file, name
