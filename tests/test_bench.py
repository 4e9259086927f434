"""`python -m retrieval bench` on a small generated shop with the tiny test
backbone: every figure the issue asks for is there and sane."""

import json

import pytest
import torch

from conftest import noise_shop
from retrieval.cli.main import main
from retrieval.errors import LookalikeError
from retrieval.models.runtimes import resolve_runtime


def test_bench_reports_every_figure(tmp_path, capsys):
    shop = noise_shop(tmp_path / "shop", classes=4, per_class=8, size=(24, 32))
    out = tmp_path / "bench.json"
    assert main(["bench", "--catalogue", str(shop), "--backbone", "tiny_test", "--per-class", "3", "--rounds", "1",
                 "--index-sizes", "--filter-sizes", "--json", str(out)]) == 0  # index and filters: tests below
    results = json.loads(out.read_text())
    rows = {row["pipeline"]: row for row in results["embed"]}
    assert set(rows) == {"naive", "eager", "openvino", "openvino-bf16", "openvino-int8", "product"}
    assert rows["product"]["runtime"] == resolve_runtime(None, torch.device("cpu"))  # what the product runs
    assert rows["openvino-int8"]["runtime"] == "openvino-int8" and rows["openvino-int8"]["max_abs_diff_vs_eager"] > 0
    assert results["embed_images_per_s"] > 0 and results["embed_speedup"] > 0
    assert rows["openvino"]["max_abs_diff_vs_eager"] <= 1e-4 and 0 <= rows["product"]["recall_at_1"] <= 1
    assert results["query_p50_ms"] > 0 and results["add_20_seconds"] > 0
    assert results["added_found_first"] == "20/20"
    assert "| product |" in capsys.readouterr().out


def test_filtered_search_latency_and_recall_are_measured():
    from retrieval.bench.filters import filter_benchmark

    rows = filter_benchmark((3_000,), dim=32, log=lambda *a: None)
    assert [r["selectivity"] for r in rows] == [0.5, 0.05, 0.001]
    assert all(r["p50_ms"] > 0 and r["recall_at_10"] >= 0.95 for r in rows)
    assert rows[2]["allowed"] < 10 < rows[1]["allowed"] < rows[0]["allowed"]


def test_catalogue_scale_steps_are_measured_as_users_run_them(tmp_path, monkeypatch):
    import retrieval.bench.catalogue_scale as scale

    monkeypatch.setattr(scale, "CHANGED", 10)
    monkeypatch.setattr(scale, "QUERIES", 5)
    rows = scale.catalogue_benchmark((200,), ("usearch",), workdir=tmp_path, log=lambda *a: None)
    row = rows[0]
    assert row["items"] == 200 and row["backend"] == "usearch"
    assert all(row[k] > 0 for k in ("first_index_s", "reopen_s", "add_1000_s", "remove_1000_s", "query_p50_ms",
                                      "peak_rss_mb"))
    assert "| 200 | usearch |" in scale.markdown(rows)


def test_catalogue_scale_deletes_only_what_it_made(tmp_path):
    import retrieval.bench.catalogue_scale as scale

    mine = tmp_path / "catalogue-200"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"someone's photo")
    with pytest.raises(LookalikeError, match="refusing"):
        scale.catalogue_benchmark((200,), ("usearch",), workdir=tmp_path, log=lambda *a: None)
    assert (mine / "holiday.jpg").read_bytes() == b"someone's photo"
    (tmp_path / "catalogue-300").mkdir()
    (tmp_path / "catalogue-300" / ".complete").write_text("300")
    (tmp_path / "cache-300-usearch").mkdir()
    (tmp_path / "cache-300-usearch" / "notes.txt").write_text("not a cache")
    with pytest.raises(LookalikeError, match="not a Lookalike cache"):
        scale.catalogue_benchmark((300,), ("usearch",), workdir=tmp_path, log=lambda *a: None)
    assert (tmp_path / "cache-300-usearch" / "notes.txt").is_file()
