"""The `openvino-int8` runtime's network: the backbone's OpenVINO network
quantised to int8 by NNCF post-training quantisation (issue #24).

The recipe (measured in the int8 prototype, BENCHMARKS.md): NNCF's default
algorithm (min-max ranges, per-channel int8 weights, per-tensor activations,
fast bias correction), preset PERFORMANCE, target CPU, on CALIBRATION_IMAGES
images preprocessed exactly as for extraction; the pooling after the stages
(GeM, normalisation, concatenation of the taps) stays in float: quantising it
lost R@1 (.005-.01 on protocol A) for no speed.

Calibration images. The network is quantised once per cache root and
backbone, on CALIBRATION_IMAGES images spread evenly over the catalogue it
first serves (`Backbone.calibrate_on`: the Recommender, hence `index`,
`search`, `evaluate`, `finetune` and the app, passes its catalogue), and kept:
a grown catalogue, another catalogue or a restart reuse it, so features
already stored stay valid. Where nothing passed a catalogue (a backbone used
on its own), it is calibrated on a fixed set of synthetic images (smooth
colour noise from a fixed seed): deterministic, but ranges less faithful than
real photos'. Which images were used is recorded in the entry (its
`calibration` digest) and is part of the features' fingerprint: features of
networks calibrated apart are never mixed, also when a damaged entry is
rebuilt on other images.

Needs NNCF (`pip install nncf==3.4.0`), imported only when an int8 network
has to be made; a cached one loads without it.
"""

import contextlib
import logging
import sys
from importlib import metadata
from importlib.util import find_spec

import numpy as np
from PIL import Image

from retrieval.errors import LookalikeError
from retrieval.store.fingerprint import digest

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 100  # as good as 300 or 600 on protocol A, at a third of the time
SYNTHETIC_SEED = 0
# ov.convert_model names the ops of a StagedNet's stages, and of its side network's, so
STAGE_PREFIXES = ("__module.stages.", "__module.side.stages.")


def has_nncf() -> bool:
    return find_spec("nncf") is not None


def nncf_version() -> str:
    """NNCF's installed version; a one-line LookalikeError when it isn't installed."""
    if not has_nncf():
        raise LookalikeError("runtime openvino-int8 needs NNCF: pip install nncf==3.4.0")
    return metadata.version("nncf")


def calibration_set(preprocess, size: tuple, catalogue=None, n: int = CALIBRATION_IMAGES):
    """(images float32 (N, 3, H, W) preprocessed by `preprocess`, a digest
    naming them): `n` images spread evenly over `catalogue` (its rows in
    order; unreadable ones left out), or the synthetic set when there is no
    catalogue or none of them could be read."""
    images, keys = [], []
    if catalogue is not None and len(catalogue):
        for row in sorted(set(np.linspace(0, len(catalogue) - 1, min(n, len(catalogue))).round().astype(int))):
            try:
                images.append(catalogue.image(int(row)))
            except LookalikeError:  # missing or corrupt since the catalogue was read: extraction skips it too
                continue
            keys.append(catalogue.keys[int(row)])
    if images:
        name = digest("catalogue", keys)
    else:
        images, name = synthetic_images(size, n), digest("synthetic", SYNTHETIC_SEED, n, list(size))
    batch = np.stack([np.asarray(preprocess(image), dtype=np.float32) for image in images])
    return batch, name


def synthetic_images(size: tuple, n: int) -> list:
    """`n` RGB images of `size` (height, width): smooth colour noise (random
    8x8 fields upscaled) from a fixed seed, the same on every machine."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    height, width = size
    return [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((width, height), Image.BILINEAR)
            for _ in range(n)]


def float_scope(ov_model):
    """nncf.IgnoredScope keeping the converted StagedNet's ops outside its
    stages and its side network's (the pooling, normalisation and
    concatenation of the taps) in float."""
    import nncf

    skip = {"Parameter", "Result", "Constant"}
    names = sorted(op.get_friendly_name() for op in ov_model.get_ops()
                   if op.get_type_name() not in skip and not op.get_friendly_name().startswith(STAGE_PREFIXES)
                   and op.get_output_size() == 1 and op.get_output_partial_shape(0).rank.is_static
                   and op.get_output_partial_shape(0).rank.get_length() >= 2)
    return nncf.IgnoredScope(names=names, validate=False)


def quantise(ov_model, images: np.ndarray, staged: bool = True):
    """The float32 OpenVINO network -> an int8 one (`ov_model` is left as it
    is), calibrated on `images` (N, 3, H, W), one image a sample. `staged`:
    the network is a converted StagedNet, whose pooling stays in float
    (other networks are quantised whole)."""
    nncf_version()
    import nncf

    log.info("quantising the backbone to int8 on %d calibration images (once; cached)", len(images))
    nncf.set_log_level(logging.WARNING)  # its log and progress bars go to stdout, the CLI's answer's
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(ov_model.clone(), nncf.Dataset(list(images), lambda image: image[None]),
                             preset=nncf.QuantizationPreset.PERFORMANCE, target_device=nncf.TargetDevice.CPU,
                             subset_size=len(images), fast_bias_correction=True,
                             ignored_scope=float_scope(ov_model) if staged else None)
