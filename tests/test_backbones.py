import pytest
import torch
from torch import nn

from retrieval.backbones import _REGISTRY, fold_batchnorm


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
