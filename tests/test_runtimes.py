"""Inference runtimes: OpenVINO must give torch's features (so caches and
heads stay valid), bfloat16 must be cached apart, and a damaged converted
network must be converted again, never served."""

import pytest
import torch

from retrieval.errors import LookalikeError
from retrieval.models import runtimes
from retrieval.models.backbones import create_backbone
from retrieval.models.runtimes import resolve_runtime
from retrieval.search.recommender import Recommender
from retrieval.store.cache import cache_root

BATCH = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_openvino_gives_torchs_features_and_fingerprint(own_cache):
    torch_backbone = create_backbone("tiny_test", runtime="torch")
    openvino = create_backbone("tiny_test", runtime="openvino")
    assert openvino.runtime == "openvino"
    assert torch.allclose(openvino(BATCH), torch_backbone(BATCH), atol=1e-5)
    assert openvino(BATCH[:1]).shape == (1, torch_backbone.dim)  # any batch size
    assert openvino.fingerprint == torch_backbone.fingerprint


def test_bfloat16_features_are_cached_apart(own_cache):
    bf16 = create_backbone("tiny_test", runtime="openvino-bf16")
    assert bf16.fingerprint != create_backbone("tiny_test", runtime="torch").fingerprint
    assert bf16.config() == create_backbone("tiny_test", runtime="torch").config()  # heads still fit


def test_float32_and_bfloat16_compile_one_converted_network(own_cache):
    """The converted network is named by what it is, not by the precision
    its features are computed in: a second runtime converts nothing again."""
    create_backbone("tiny_test", runtime="openvino").warm_up()
    create_backbone("tiny_test", runtime="openvino-bf16").warm_up()
    assert len(list(own_cache.glob("openvino/*/meta.json"))) == 1


def test_auto_is_openvino_on_the_cpu_and_bad_names_are_one_error(own_cache, monkeypatch):
    assert resolve_runtime("auto", torch.device("cpu")) == "openvino-int8"  # this CPU has AVX-512 VNNI, NNCF is here
    monkeypatch.setattr(runtimes, "has_nncf", lambda: False)
    assert resolve_runtime("auto", torch.device("cpu")) == "openvino-bf16"  # and AVX-512 BF16
    monkeypatch.setattr(runtimes, "has_nncf", lambda: True)
    monkeypatch.setattr(runtimes, "_cpu_has_vnni", lambda: False)
    assert resolve_runtime("auto", torch.device("cpu")) == "openvino-bf16"
    monkeypatch.setattr(runtimes, "_cpu_has_bf16", lambda: False)
    assert resolve_runtime("auto", torch.device("cpu")) == "openvino"
    assert resolve_runtime("auto", torch.device("cuda")) == "torch"
    monkeypatch.setenv("LOOKALIKE_RUNTIME", "torch")
    assert create_backbone("tiny_test").runtime == "torch"
    with pytest.raises(LookalikeError, match="runtime must be one of"):
        resolve_runtime("tensorrt", torch.device("cpu"))
    with pytest.raises(LookalikeError, match="CPU only"):
        resolve_runtime("openvino", torch.device("cuda"))


def test_a_damaged_converted_network_is_converted_again(own_cache, caplog):
    expected = create_backbone("tiny_test", runtime="torch")(BATCH)
    create_backbone("tiny_test", runtime="openvino")(BATCH)
    weights = next((cache_root() / "openvino").glob("*/model.bin"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    weights.write_bytes(bytes(data))
    assert torch.allclose(create_backbone("tiny_test", runtime="openvino")(BATCH), expected, atol=1e-5)
    assert "damaged" in caplog.text


def test_real_weights_same_features_in_openvino(own_cache):
    images = torch.randn(2, 3, 288, 384, generator=torch.Generator().manual_seed(1))
    reference = create_backbone("efficientnet_lite0", runtime="torch")(images)
    openvino = create_backbone("efficientnet_lite0", runtime="openvino")(images)
    assert float((openvino - reference).abs().max()) <= 1e-4


def test_warm_up_converts_the_network_before_the_first_query(own_cache):
    backbone = create_backbone("tiny_test", runtime="openvino")
    assert not list(own_cache.glob("openvino/*/model.xml"))
    backbone.warm_up()
    assert "_openvino" in vars(backbone) and list(own_cache.glob("openvino/*/model.xml"))


def test_the_converted_network_is_cached_under_the_cache_dir_given(own_cache, class_folders, tmp_path_factory):
    """--cache-dir holds every cache entry, the converted network too (a
    read-only or full default root must not matter)."""
    given = tmp_path_factory.mktemp("given")
    Recommender.open(str(class_folders), "tiny_test", cache_dir=given, runtime="openvino").build()
    assert list(given.glob("openvino/*/model.xml"))
    assert not list(own_cache.glob("openvino/*"))
