"""`python -m retrieval` as a user runs it: only the answer on stdout, and
argument mistakes reported before any model loads."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import retrieval.search.recommender
from retrieval.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_search_json_is_the_only_stdout_online_or_offline(class_folders, tmp_path):
    query = class_folders / "red" / "red2.png"
    base = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    for env in (base, dict(base, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")):
        out = subprocess.run([sys.executable, "-m", "retrieval", "search", "--catalogue", str(class_folders),
                              "--backbone", "tiny_test", "--image", str(query), "--k", "3", "--json",
                              "--cache-dir", str(tmp_path / "cache")], cwd=ROOT, env=env, capture_output=True,
                             text=True, check=True)
        results = json.loads(out.stdout)
        assert [r["rank"] for r in results] == [1, 2, 3] and results[0]["id"] == "red/red2"


def test_library_chatter_goes_to_stderr(class_folders, tmp_path, monkeypatch, capsys):
    """torch.hub prints "Downloading: ..." on stdout while weights download:
    the CLI sends anything printed during the work to stderr."""
    real_open = retrieval.search.recommender.Recommender.open

    def chatty_open(*args, **kwargs):
        print('Downloading: "https://download.pytorch.org/models/resnet18-f37072fd.pth"')
        return real_open(*args, **kwargs)

    monkeypatch.setattr(retrieval.search.recommender.Recommender, "open", chatty_open)
    assert main(["search", "--catalogue", str(class_folders), "--backbone", "tiny_test", "--json", "--k", "2",
                 "--image", str(class_folders / "blue" / "blue0.png"), "--cache-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["id"] == "blue/blue0"
    assert "Downloading" in captured.err


@pytest.mark.parametrize("args, message", [
    (["--k", "0"], "--k must be from 1 to 50, not 0"),
    (["--backbone", "resnet1000"], "unknown backbone 'resnet1000'"),
    (["--image", "nowhere.png"], "--image nowhere.png: no such file"),
])
def test_argument_mistakes_are_reported_before_models_load(class_folders, monkeypatch, capsys, args, message):
    monkeypatch.setattr(retrieval.search.recommender.Recommender, "open",
                        lambda *a, **k: pytest.fail("a model was loaded"))
    argv = ["search", "--catalogue", str(class_folders), "--image", str(class_folders / "red" / "red0.png"), *args]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_unreadable_query_is_one_line_without_object_reprs(class_folders, tmp_path, capsys):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"this is not an image")
    assert main(["search", "--catalogue", str(class_folders), "--backbone", "tiny_test", "--image", str(bad),
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "not a readable image" in err and "object at 0x" not in err
