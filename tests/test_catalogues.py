import gzip

import datasets
import numpy as np
import pytest

from retrieval.data.catalogues import load_catalogue
from retrieval.data.subsets import parse_classes
from retrieval.errors import LookalikeError


def _assert_schema(cat):
    assert list(cat.dataset.features)[:3] == ["image", "label", "id"]  # then any metadata
    assert isinstance(cat.dataset.features["label"], datasets.ClassLabel)
    assert len(set(cat.dataset["id"])) == len(cat)
    assert cat.image(0).mode == "RGB"


def test_class_folders(class_folders):
    cat = load_catalogue(str(class_folders))
    _assert_schema(cat)
    assert cat.label_names == ["blue", "green", "red"] and len(cat) == 12
    assert len(load_catalogue(str(class_folders), classes="0-1")) == 8


def test_parquet_loads_to_same_schema(class_folders, tmp_path):
    src = load_catalogue(str(class_folders)).dataset
    src.rename_column("label", "category").to_parquet(tmp_path / "cat.parquet")
    cat = load_catalogue(str(tmp_path / "cat.parquet"))
    _assert_schema(cat)
    assert cat.label_names == ["blue", "green", "red"] and len(cat) == 12


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_layout(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (6, 28, 28))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", pixels)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 9, 9, 0]))
    cat = load_catalogue(str(tmp_path))
    _assert_schema(cat)
    assert cat.label_names[9] == "Ankle boot" and len(cat) == 6 and cat.image(0).size == (28, 28)
    assert np.array_equal(np.asarray(cat.image(4))[..., 0], pixels[4])  # lossless


def test_stanford_cars_layout(cars):
    cat = load_catalogue(str(cars), classes="14")
    _assert_schema(cat)
    assert {cat.label_names[label] for label in cat.dataset["label"]} == {"Audi TTS Coupe 2012"}
    assert "00001" in cat.dataset["id"]


def test_classes_parsing_and_errors(tmp_path):
    assert parse_classes("1-3, 7, 2-4") == [(1, 4), (7, 7)]
    with pytest.raises(LookalikeError):
        parse_classes("a-b")
    with pytest.raises(LookalikeError, match="no such folder"):
        load_catalogue(str(tmp_path / "missing"))
    with pytest.raises(LookalikeError, match="could not load 'someone/data' split 'test' from the Hugging Face Hub"):
        load_catalogue("hub:someone/data:test")  # the tests run offline
    (tmp_path / "empty").mkdir()
    with pytest.raises(LookalikeError, match="not recognised"):
        load_catalogue(str(tmp_path / "empty"))
