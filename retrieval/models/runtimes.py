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
- `auto`: on the CPU `openvino-bf16` where the CPU computes in bfloat16
  natively (AVX-512 BF16, AMX), else `openvino`, else (not installed) `torch`

The network converted for OpenVINO is cached (converting takes seconds,
loading it a fraction of one) under the cache root, checked like any artefact.
"""

import functools
import logging
import os
import threading

import numpy as np
import torch

from retrieval.errors import DamagedArtefact, LookalikeError
from retrieval.store.artefacts import check, check_seal, record, seal
from retrieval.store.atomic import atomic_dir, write_json
from retrieval.store.cache import cache_root, entry_dir, mark_used, read_meta
from retrieval.store.fingerprint import digest

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "openvino", "openvino-bf16")
PRECISIONS = {"openvino": "f32", "openvino-bf16": "bf16"}
IR_FILES = ("model.xml", "model.bin")
ENTRY_FORMAT = 2  # in the entry's name: entries of an older format are never met


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
        return "openvino-bf16" if _cpu_has_bf16() else "openvino"
    if name.startswith("openvino") and not _has_openvino():
        raise LookalikeError(f"runtime {name} needs OpenVINO: pip install openvino")
    return name


def feature_precision(runtime: str) -> str | None:
    """What the runtime changes in the features (None: nothing; they are torch's)."""
    return "bf16" if runtime == "openvino-bf16" else None


class OpenVinoRunner:
    """A network compiled by OpenVINO for the CPU: (N, 3, H, W) -> (N, dim).
    Safe to call from several threads (a request per thread)."""

    def __init__(self, compiled):
        self.compiled, self._local = compiled, threading.local()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        outputs = request.infer({0: np.ascontiguousarray(batch.numpy(), dtype=np.float32)})
        return torch.from_numpy(np.array(outputs[0], dtype=np.float32))


def openvino_runner(model: torch.nn.Module, input_size: tuple, fingerprint: str, precision: str,
                    cache_dir=None) -> OpenVinoRunner:
    """`model` (frozen, on the CPU) compiled by OpenVINO for inputs of
    `input_size` (height, width) and any batch size, from the converted
    network cached for `fingerprint` under `cache_dir` (converted and cached
    when missing or damaged)."""
    import openvino as ov

    folder = entry_dir(cache_root(cache_dir), "openvino", digest("openvino", fingerprint, ov.__version__, ENTRY_FORMAT))
    core = ov.Core()
    network = _read_cached(core, folder)
    if network is not None:
        mark_used(folder)
    else:
        network = _convert(ov, model, input_size)
        with atomic_dir(folder, "openvino") as tmp:
            ov.save_model(network, str(tmp / "model.xml"), compress_to_fp16=False)
            write_json(tmp / "meta.json", seal({"fingerprint": fingerprint, "openvino": ov.__version__,
                                                "files": record(tmp, IR_FILES)}))
    compiled = core.compile_model(network, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads(),
                                                   "INFERENCE_PRECISION_HINT": precision})
    return OpenVinoRunner(compiled)


def _read_cached(core, folder):
    try:
        meta = read_meta(folder)
        if meta is None:
            return None
        check_seal(folder / "meta.json", meta)
        check(folder, meta.get("files"), required=IR_FILES)
        return core.read_model(str(folder / "model.xml"))
    except (DamagedArtefact, RuntimeError, OSError) as e:
        log.warning("converted network %s is damaged (%s): converting again", folder, e)
        return None


def _convert(ov, model: torch.nn.Module, input_size: tuple):
    log.info("converting the backbone for OpenVINO (once; cached)")
    example = torch.zeros(2, 3, *input_size)
    with torch.no_grad():
        return ov.convert_model(model, example_input=example, input=[ov.PartialShape([-1, 3, *input_size])])


@functools.cache
def _cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True
