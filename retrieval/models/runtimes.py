"""Where a frozen backbone runs its inference (not its training).

On the CPU, OpenVINO runs efficientnet_lite0 with the same features as torch
(max difference 3e-8) at a fraction of the CPU time, and in bfloat16 on CPUs
with AVX-512 BF16 faster still (BENCHMARKS.md, "Fast extraction"). On CUDA,
torch with autocast. Runtimes by name:

- `torch`: eager PyTorch (float32 on the CPU, float16 autocast on CUDA)
- `openvino`: OpenVINO float32 on the CPU: the same features as `torch`
- `openvino-bf16`: OpenVINO with bfloat16 inference: other features (cached
  apart), with the same ranking quality: on protocol A (cars, head trained on
  classes 1-49, measured on 50-98) R@1 .3719 against float32's .3714
  pretrained, .4448 against .4458 fine-tuned (BENCHMARKS.md)
- `openvino-int8`: the network quantised to int8 by NNCF (quantise.py: how,
  and on which calibration images), run by OpenVINO; other features (cached
  apart, named by their calibration images too). Needs `nncf`.
- `auto`: on the CPU `openvino-int8` where the CPU has int8 dot products
  (AVX-512 VNNI, AVX-VNNI, AMX) and NNCF is installed; else `openvino-bf16`
  where it computes in bfloat16 natively (AVX-512 BF16, AMX); else
  `openvino`; else (not installed) `torch`. int8 was measured faster and as
  good: on protocol A (cars, head trained on classes 1-49, measured on 50-98;
  2-core EPYC with VNNI) R@1 .3738 against float32's .3709 pretrained, .4439
  against .4370 fine-tuned (bf16: .3719, .4380), extracting faster than
  bfloat16 (BENCHMARKS.md). Changing auto's pick changes the features'
  fingerprint: stored features of the old pick are extracted again once.

The network converted for OpenVINO, and its int8 version, are cached
(converting takes seconds, quantising half a minute, loading either a
fraction of one) under the cache root, checked like any artefact: a damaged
entry is made again.
"""

import functools
import logging
import os
import threading

import numpy as np
import torch

from retrieval.errors import DamagedArtefact, LookalikeError
from retrieval.models.quantise import has_nncf, nncf_version
from retrieval.store.artefacts import check, check_seal, record, seal
from retrieval.store.atomic import atomic_dir, write_json
from retrieval.store.cache import cache_root, entry_dir, mark_used, read_meta
from retrieval.store.fingerprint import digest

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "openvino", "openvino-bf16", "openvino-int8")
# the inference precision hint each is compiled with (int8's convolutions run
# in int8 whatever it says; f32 keeps its float pooling exact, as fast as bf16)
PRECISIONS = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-int8": "f32"}
IR_FILES = ("model.xml", "model.bin")
ENTRY_FORMAT = 2  # in the entry's name: entries of an older format are never met
INT8_FORMAT = 1


def resolve_runtime(name: str | None, device: torch.device) -> str:
    """A concrete runtime for `device` ($LOOKALIKE_RUNTIME when `name` is None)."""
    name = name or os.environ.get("LOOKALIKE_RUNTIME") or "auto"
    if name not in RUNTIMES:
        raise LookalikeError(f"runtime must be one of {', '.join(RUNTIMES)}, not {name!r}")
    if device.type != "cpu":
        if name.startswith("openvino"):
            raise LookalikeError(f"runtime {name} runs on the CPU only; use --device cpu or --runtime torch")
        return "torch"
    if name == "auto":
        if not _has_openvino():
            return "torch"
        if _cpu_has_vnni() and has_nncf():
            return "openvino-int8"
        return "openvino-bf16" if _cpu_has_bf16() else "openvino"
    if name.startswith("openvino") and not _has_openvino():
        raise LookalikeError(f"runtime {name} needs OpenVINO: pip install openvino")
    if name == "openvino-int8":
        nncf_version()  # one line when it isn't installed, before anything is built
    return name


def float_runtime(runtime: str) -> str:
    """The runtime for a network with fine-tuned stages: int8 was measured on
    pretrained networks only (protocol A), so those run in the best float one."""
    if runtime != "openvino-int8":
        return runtime
    return "openvino-bf16" if _cpu_has_bf16() else "openvino"


def feature_precision(runtime: str) -> str | None:
    """What the runtime changes in the features (None: nothing; they are
    torch's). int8 features are further named by their calibration
    (OpenVinoRunner.calibration)."""
    return {"openvino-bf16": "bf16", "openvino-int8": "int8"}.get(runtime)


class OpenVinoRunner:
    """A network compiled by OpenVINO for the CPU: (N, 3, H, W) -> (N, dim).
    Safe to call from several threads (a request per thread)."""

    def __init__(self, compiled, calibration: str | None = None, folder=None):
        self.compiled, self._local = compiled, threading.local()
        self.calibration = calibration  # int8: the digest of its calibration images
        self.folder = folder  # its cache entry (None: it came as bytes)

    def network_bytes(self) -> tuple:
        """(model.xml, model.bin) of its network, for another process to run the same one."""
        return tuple((self.folder / name).read_bytes() for name in IR_FILES)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        outputs = request.infer({0: np.ascontiguousarray(batch.numpy(), dtype=np.float32)})
        return torch.from_numpy(np.array(outputs[0], dtype=np.float32))


def openvino_runner(model: torch.nn.Module, input_size: tuple, network: str, runtime: str,
                    cache_dir=None, calibrate=None) -> OpenVinoRunner:
    """`model` (frozen, on the CPU) compiled by OpenVINO for `runtime` and
    inputs of `input_size` (height, width) and any batch size, from the
    network cached under the name `network` (a digest of what the network is,
    whatever the runtime's precision) in `cache_dir` (converted, for int8 also
    quantised, and cached when missing or damaged). `calibrate`: for int8,
    () -> (calibration images, their digest), called only to quantise."""
    import openvino as ov

    core, root = ov.Core(), cache_root(cache_dir)
    calibration = None
    if runtime == "openvino-int8":
        ir, folder, calibration = _int8_network(ov, core, root, model, input_size, network, calibrate)
    else:
        ir, folder = _float_network(ov, core, root, model, input_size, network)
    return OpenVinoRunner(_compile(core, ir, runtime), calibration, folder)


def runner_from_bytes(xml: bytes, weights: bytes, runtime: str, calibration: str | None = None) -> OpenVinoRunner:
    """The runner of a network another process made (OpenVinoRunner.network_bytes)."""
    import openvino as ov

    core = ov.Core()
    network = core.read_model(xml.decode(), ov.Tensor(np.frombuffer(weights, dtype=np.uint8).copy()))
    return OpenVinoRunner(_compile(core, network, runtime), calibration)


def _compile(core, network, runtime: str):
    return core.compile_model(network, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads(),
                                               "INFERENCE_PRECISION_HINT": PRECISIONS[runtime]})


def _float_network(ov, core, root, model, input_size, name):
    """(the converted float32 network, its entry), cached under `name`."""
    folder = entry_dir(root, "openvino", digest("openvino", name, ov.__version__, ENTRY_FORMAT))
    network, _ = _read_cached(core, folder)
    if network is not None:
        mark_used(folder)
        return network, folder
    network = _convert(ov, model, input_size)
    _save(ov, folder, network, {"fingerprint": name, "openvino": ov.__version__})
    return network, folder


def _int8_network(ov, core, root, model, input_size, name, calibrate):
    """(the int8 network, its entry, the digest of its calibration images), cached under `name`."""
    from retrieval.models.quantise import quantise

    version = nncf_version()
    folder = entry_dir(root, "openvino", digest("openvino-int8", name, ov.__version__, version, INT8_FORMAT))
    network, meta = _read_cached(core, folder)
    if network is not None and isinstance(meta.get("calibration"), str):
        mark_used(folder)
        return network, folder, meta["calibration"]
    images, calibration = calibrate()
    float_network, _ = _float_network(ov, core, root, model, input_size, name)
    network = quantise(float_network, images, staged=type(model).__name__ == "StagedNet")
    _save(ov, folder, network, {"fingerprint": name, "openvino": ov.__version__, "nncf": version,
                                "precision": "int8", "calibration": calibration, "calibration_images": len(images)})
    return network, folder, calibration


def _save(ov, folder, network, meta: dict):
    with atomic_dir(folder, "openvino") as tmp:
        ov.save_model(network, str(tmp / "model.xml"), compress_to_fp16=False)
        write_json(tmp / "meta.json", seal({**meta, "files": record(tmp, IR_FILES)}))


def _read_cached(core, folder):
    """(the cached network, its meta), or (None, None) when missing or damaged."""
    try:
        meta = read_meta(folder)
        if meta is None:
            return None, None
        check_seal(folder / "meta.json", meta)
        check(folder, meta.get("files"), required=IR_FILES)
        return core.read_model(str(folder / "model.xml")), meta
    except (DamagedArtefact, RuntimeError, OSError) as e:
        log.warning("converted network %s is damaged (%s): converting again", folder, e)
        return None, None


def _convert(ov, model: torch.nn.Module, input_size: tuple):
    log.info("converting the backbone for OpenVINO (once; cached)")
    example = torch.zeros(2, 3, *input_size)
    with torch.no_grad():
        return ov.convert_model(model, example_input=example, input=[ov.PartialShape([-1, 3, *input_size])])


@functools.cache
def _cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@functools.cache
def _cpu_has_vnni() -> bool:
    """Whether the CPU has int8 dot products (AVX-512 VNNI, AVX-VNNI or AMX
    int8), from the kernel's CPU flags (False where there are none to read)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return False
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def _has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True
