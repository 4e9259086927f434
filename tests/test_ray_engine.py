"""`--engine ray`: Ray Data extraction gives the local loop's features row for
row, skips unreadable images with their message, and runs fine-tuned stages.

One local Ray instance (2 CPUs, small object store) serves the module and one
extraction over two actors serves most tests: starting actors costs seconds.
"""

import collections
import copy

import numpy as np
import pytest
import torch
from PIL import Image

from retrieval.data.catalogues import load_catalogue
from retrieval.embedding.embedder import Embedder, create_embedder
from retrieval.errors import LookalikeError
from retrieval.extract.ray_data import ray_features

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

BATCH = 3


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, object_store_memory=100_000_000, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Two classes of generated images, one corrupt file and one deleted after loading."""
    root = tmp_path_factory.mktemp("ray") / "shop"
    rng = np.random.default_rng(0)
    for name in ("red", "blue"):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(root / name / f"{name}{i}.png")
    (root / "red" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    catalogue = load_catalogue(str(root))
    (root / "blue" / "blue3.png").unlink()
    return catalogue


@pytest.fixture(scope="module")
def tuned(shop, tmp_path_factory):
    """tiny_test with its last two stages changed, as `--unfreeze` training
    leaves them, and already used here (what it cached stays here, in a cache
    the workers don't share, as on a cluster's other nodes). Its runtime is
    auto's: int8 on a CPU with VNNI, calibrated on the shop, which the
    workers can't see: they must run this network, not one of their own."""
    backbone = create_embedder("tiny_test", cache_dir=tmp_path_factory.mktemp("driver-cache")).backbone
    backbone.calibrate_on(shop)
    tail = copy.deepcopy(backbone.model.tail(2))
    with torch.no_grad():
        for p in tail.parameters():
            p.mul_(-1.5)
    embedder = Embedder(backbone.with_tail(tail, "tail:test"))
    embedder.backbone_features(torch.zeros(1, 3, 32, 32))
    return embedder


@pytest.fixture(scope="module")
def extraction(local_ray, shop, tuned):
    """Every row of the shop but the first, in a shuffled order (one actor: each costs seconds to start)."""
    rows = np.random.default_rng(1).permutation(np.arange(1, len(shop)))
    return rows, list(ray_features(shop, tuned, rows, batch_size=BATCH, workers=1))


def local_features(catalogue, embedder, rows):
    return embedder.backbone_features(torch.stack([embedder.preprocess(catalogue.image(r)) for r in rows]))


def local_error(catalogue, row):
    with pytest.raises(LookalikeError) as e:
        catalogue.image(row)
    return str(e.value)


def test_features_equal_the_local_loop_row_for_row(shop, tuned, extraction):
    _, batches = extraction
    done = np.concatenate([rows for rows, _, _ in batches])
    features = np.concatenate([f for _, f, _ in batches])
    assert features.dtype == np.float32 and features.shape == (len(done), 2, tuned.backbone.dim)
    assert np.abs(features - local_features(shop, tuned, done)).max() <= 1e-4


def test_fine_tuned_stages_reach_the_workers(shop, tuned, extraction):
    """The workers run the tuned stages, not the registry's backbone of that name."""
    _, batches = extraction
    done, features, _ = batches[0]
    plain = local_features(shop, create_embedder("tiny_test"), done)
    assert np.abs(features - plain).max() > 1e-2


def test_every_readable_row_once_and_unreadable_ones_skipped_with_their_message(shop, extraction):
    rows, batches = extraction
    corrupt, deleted = shop.ids.index("red/corrupt"), shop.ids.index("blue/blue3")
    counts = collections.Counter(int(r) for done, _, _ in batches for r in done)
    assert counts == collections.Counter(int(r) for r in rows if r not in (corrupt, deleted))
    skipped = sorted(m for _, _, messages in batches for m in messages)
    assert skipped == sorted(local_error(shop, row) for row in (corrupt, deleted))
    assert skipped[0] == "item blue/blue3: no such file"


def test_batches_arrive_one_by_one(extraction):
    rows, batches = extraction
    assert len(batches) == -(-len(rows) // BATCH)
    assert all(len(done) + len(skipped) <= BATCH for done, _, skipped in batches)


def test_gpu_workers_on_a_cluster_without_gpus_is_one_clear_error(local_ray, shop, tuned):
    if ray.cluster_resources().get("GPU", 0):
        pytest.skip("this Ray instance has GPUs")
    with pytest.raises(LookalikeError, match="has 0 GPU"):
        next(ray_features(shop, tuned, [0], gpus_per_worker=1))


def test_an_unreachable_cluster_is_one_clear_error(shop, tuned, monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the module's local instance is not asked
    with pytest.raises(LookalikeError, match=r"^Ray cluster ray://127.0.0.1:1 is unreachable"):
        next(ray_features(shop, tuned, [0], address="ray://127.0.0.1:1"))
    with pytest.raises(LookalikeError, match="use auto, HOST:PORT or ray://HOST:10001"):
        next(ray_features(shop, tuned, [0], address="head-node"))


def test_without_ray_installed_is_one_clear_error(shop, tuned, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(LookalikeError, match=r"needs Ray Data: pip install 'ray\[client,data\]'"):
        next(ray_features(shop, tuned, [0]))


def test_index_engine_ray_stores_what_the_local_engine_stores(local_ray, tmp_path, monkeypatch):
    """`python -m retrieval index --engine ray` end to end: Ray extracts, and
    the feature store it fills holds the local engine's features."""
    import retrieval.extract.ray_data as ray_engine
    from conftest import noise_shop
    from retrieval.cli.main import main
    from retrieval.search.recommender import Recommender

    asked = []
    monkeypatch.setattr(ray_engine, "ray_features", lambda catalogue, embedder, rows, *a, **k: asked.append(
        len(rows)) or ray_features(catalogue, embedder, rows, *a, **k))
    shop = noise_shop(tmp_path / "shop", classes=2, per_class=4, size=(24, 32))
    common = ["--catalogue", str(shop), "--backbone", "tiny_test", "--ray-workers", "1"]
    assert main(["index", *common, "--engine", "ray", "--cache-dir", str(tmp_path / "ray")]) == 0
    assert asked == [8]
    catalogue, embedder = load_catalogue(str(shop)), create_embedder("tiny_test")
    by_ray, rows = Recommender(catalogue, embedder, tmp_path / "ray").features()  # stored: no extraction
    local, local_rows = Recommender(catalogue, embedder, tmp_path / "local").features()
    assert np.array_equal(rows, local_rows) and float(np.abs(by_ray - local).max()) <= 1e-4
