"""`python -m retrieval bench` on a small generated shop with the tiny test
backbone: every figure the issue asks for is there and sane."""

import json

from conftest import noise_shop
from retrieval.cli.main import main


def test_bench_reports_every_figure(tmp_path, capsys):
    shop = noise_shop(tmp_path / "shop", classes=4, per_class=8, size=(24, 32))
    out = tmp_path / "bench.json"
    assert main(["bench", "--catalogue", str(shop), "--backbone", "tiny_test", "--per-class", "3", "--rounds", "1",
                 "--index-sizes", "--json", str(out)]) == 0  # index_bench.py has its own test
    results = json.loads(out.read_text())
    rows = {row["pipeline"]: row for row in results["embed"]}
    assert set(rows) == {"naive", "eager", "openvino", "product"} and rows["product"]["runtime"] == "openvino-bf16"
    assert results["embed_images_per_s"] > 0 and results["embed_speedup"] > 0
    assert rows["openvino"]["max_abs_diff_vs_eager"] <= 1e-4 and 0 <= rows["product"]["recall_at_1"] <= 1
    assert results["query_p50_ms"] > 0 and results["add_20_seconds"] > 0
    assert results["added_found_first"] == "20/20"
    assert "| product |" in capsys.readouterr().out
