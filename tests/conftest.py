import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# the default cache root (what tests and their subprocesses don't name, such
# as networks converted for OpenVINO): one per test session, never the user's
os.environ.setdefault("LOOKALIKE_CACHE", __import__("tempfile").mkdtemp(prefix="lookalike-tests-"))
# The runtime the mechanics were written against (auto's pick before int8):
# quantising the tiny random test network makes many distinct images' features
# equal (ties, collapsed "near-identical" results). int8 has its own tests.
os.environ.setdefault("LOOKALIKE_RUNTIME", "openvino-bf16")

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CARS = ROOT.parent / "shared" / "data" / "stanford-cars-thumbs"


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A default cache root of the test's own (what nothing names goes there)."""
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def class_folders(tmp_path):
    """Three classes of four generated images each: a colour per class."""
    root = tmp_path / "shop"
    rng = np.random.default_rng(0)
    for name, colour in [("red", (220, 30, 30)), ("green", (30, 200, 40)), ("blue", (30, 40, 220))]:
        (root / name).mkdir(parents=True)
        for i in range(4):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (48, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}{i}.png")
    return root


def pytest_configure(config):
    config.addinivalue_line("markers", "ray: starts a local Ray instance (tests/test_ray_engine.py)")


def refusal_in_child(child_code: str, folder, checks: str) -> str:
    """Run `child_code` (opens `folder`, prints one line and exits 3 when it
    refuses it) in a fresh interpreter, where a segfault can't take the tests
    down; its one line, after checking it neither crashed nor said more."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", child_code, str(folder), checks], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert child.returncode == 3, f"exit {child.returncode} (-11: segfault): {child.stdout}{child.stderr[-1500:]}"
    assert len(child.stdout.strip().splitlines()) == 1, child.stdout
    return child.stdout


def noise_shop(root, classes: int, per_class: int, size=(48, 64)):
    """Class folders c0..c{classes-1} of random-noise PNGs: no two alike."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.png")
    return root


@pytest.fixture
def cars():
    if not CARS.is_dir():
        pytest.skip("../shared/data/stanford-cars-thumbs is not beside the project")
    return CARS


@contextmanager
def launched(service):
    """(the page for `service`, its URL) served on 127.0.0.1 until the block ends."""
    from ui import page

    demo = page.build_demo(service)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1",
                            **page.launch_options(service))
    try:
        yield demo, url
    finally:
        demo.close()
