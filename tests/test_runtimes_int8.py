"""The openvino-int8 runtime: features close to float32's but cached apart
(named by their calibration too), calibrated on the catalogue served, its
quantised network cached (reused, never quantised twice; rebuilt when
damaged), and one line when NNCF isn't installed."""

import json
import sys

import numpy as np
import pytest
import torch

from retrieval.cli.main import main
from retrieval.data.catalogues import load_catalogue
from retrieval.errors import LookalikeError
from retrieval.models import quantise, runtimes
from retrieval.models.backbones import create_backbone
from retrieval.models.runtimes import float_runtime, resolve_runtime
from retrieval.search.recommender import Recommender
from retrieval.store.fingerprint import digest

pytest.importorskip("nncf")


def _images(catalogue, backbone) -> torch.Tensor:
    return torch.stack([backbone.preprocess(catalogue.image(row)) for row in range(len(catalogue))])


def _int8_entry(cache):
    return next(meta.parent for meta in cache.glob("openvino/*/meta.json") if '"int8"' in meta.read_text())


def test_int8_features_are_close_to_float32_cached_apart_and_calibrated_on_the_catalogue(own_cache, class_folders):
    rec = Recommender.open(str(class_folders), "tiny_test", runtime="openvino-int8")
    int8, catalogue = rec.embedder.backbone, rec.catalogue
    reference = create_backbone("tiny_test", runtime="torch")
    images = _images(catalogue, reference)
    cosine = torch.nn.functional.cosine_similarity(int8(images), reference(images))
    assert float(cosine.min()) > 0.97
    assert not torch.allclose(int8(images), reference(images), atol=1e-4)  # int8 did run
    assert int8.config() == reference.config()  # a float32 head still fits
    assert int8.fingerprint not in (reference.fingerprint, create_backbone("tiny_test", runtime="openvino-bf16")
                                    .fingerprint)
    calibration = digest("catalogue", catalogue.keys)  # 12 images: each one
    meta = json.loads((_int8_entry(own_cache) / "meta.json").read_text())
    assert int8._openvino.calibration == meta["calibration"] == calibration
    float32 = Recommender.open(str(class_folders), "tiny_test", runtime="openvino")
    assert rec.fingerprints()["features_fingerprint"] != float32.fingerprints()["features_fingerprint"]


def test_without_a_catalogue_it_calibrates_on_fixed_synthetic_images(own_cache):
    first = create_backbone("tiny_test", runtime="openvino-int8")
    batch = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert first._openvino.calibration == digest("synthetic", quantise.SYNTHETIC_SEED, quantise.CALIBRATION_IMAGES,
                                                 [32, 32])
    a, b = quantise.synthetic_images((32, 32), 2), quantise.synthetic_images((32, 32), 2)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert first(batch).shape == (3, first.dim)


def test_the_quantised_network_is_reused_and_rebuilt_when_damaged(own_cache, monkeypatch, caplog):
    batch = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    first = create_backbone("tiny_test", runtime="openvino-int8")
    expected, fingerprint = first(batch), first.fingerprint
    calls = []
    real = quantise.quantise
    monkeypatch.setattr(quantise, "quantise", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = create_backbone("tiny_test", runtime="openvino-int8")  # reused: not quantised again
    assert torch.allclose(again(batch), expected, atol=1e-5) and again.fingerprint == fingerprint and not calls

    weights = _int8_entry(own_cache) / "model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    weights.write_bytes(bytes(data))
    rebuilt = create_backbone("tiny_test", runtime="openvino-int8")
    assert torch.allclose(rebuilt(batch), expected, atol=1e-5) and calls == [1]  # quantised again
    assert "damaged" in caplog.text
    assert (_int8_entry(own_cache) / "model.bin").read_bytes() != bytes(data)


def test_without_nncf_int8_is_one_line(own_cache, monkeypatch, class_folders, capsys):
    monkeypatch.setitem(sys.modules, "nncf", None)  # as if not installed: import fails, find_spec is None
    with pytest.raises(LookalikeError, match=r"^runtime openvino-int8 needs NNCF: pip install nncf==3\.4\.0$"):
        resolve_runtime("openvino-int8", torch.device("cpu"))
    assert main(["index", "--catalogue", str(class_folders), "--backbone", "tiny_test",
                 "--runtime", "openvino-int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("runtime openvino-int8 needs NNCF: pip install nncf==3.4.0") and "Traceback" not in err
    monkeypatch.setenv("LOOKALIKE_RUNTIME", "openvino-int8")
    with pytest.raises(LookalikeError, match="needs NNCF"):
        create_backbone("tiny_test")
    monkeypatch.setattr(runtimes, "_cpu_has_vnni", lambda: True)  # whatever this CPU has
    assert resolve_runtime("auto", torch.device("cpu")) == float_runtime("openvino-int8")  # auto falls back


def test_calibration_leaves_out_unreadable_images(class_folders):
    catalogue = load_catalogue(str(class_folders))
    (class_folders / "red" / "red1.png").unlink()  # gone since the catalogue was read
    backbone = create_backbone("tiny_test", runtime="torch")
    images, name = quantise.calibration_set(backbone.preprocess, (32, 32), catalogue)
    kept = [key for key, item in zip(catalogue.keys, catalogue.ids) if item != "red/red1"]
    assert images.shape == (11, 3, 32, 32) and name == digest("catalogue", kept)


def test_fine_tuned_stages_run_in_float(own_cache):
    """int8 was measured on pretrained networks only: a backbone given
    fine-tuned last stages (--unfreeze) leaves int8 for a float runtime."""
    backbone = create_backbone("tiny_test", runtime="openvino-int8")
    tail = backbone.with_tail(backbone.model.tail(len(backbone.model.stages) - 1), "tail:test")
    assert backbone.runtime == "openvino-int8" and tail.runtime in ("openvino-bf16", "openvino")
    assert tail.fingerprint != backbone.fingerprint


def test_a_side_networks_stages_are_quantised_too(own_cache):
    """efficientnet_lite0_lite2 is one network with lite2 beside lite0's
    stages: int8 must reach the side's convolutions, not keep them float
    with the pooling."""
    import re

    create_backbone("tiny_test_pair", runtime="openvino-int8").warm_up()
    xml = (_int8_entry(own_cache) / "model.xml").read_text()
    quantised = re.findall(r'<layer id="\d+" name="([^"]+)" type="FakeQuantize"', xml)
    assert any(name.startswith("__module.side.stages.") for name in quantised)
    assert any(name.startswith("__module.stages.") for name in quantised)
