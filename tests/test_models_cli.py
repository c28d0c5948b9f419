"""`mmembed models`: the curated table, memory computed from parameter counts, and the local-cache column."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mmembed.catalog import CATALOG, parameter_counts
from mmembed.cli import app


def _cache_with(cache: Path, repo_id: str) -> None:
    """A real hub-cache layout (blob + snapshot symlink + ref) holding one small file of ``repo_id``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    sha = "2" * 40
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_text("{}")
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to(Path("../../blobs/abc"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)


def test_models_table_and_cache_column(tmp_path: Path) -> None:
    _cache_with(tmp_path, "openai/clip-vit-base-patch32")
    runner = CliRunner()
    res = runner.invoke(app, ["models", "--json", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    table = {r["name"]: r for r in json.loads(res.output)}
    assert set(table) == {e.name for e in CATALOG}
    counts = parameter_counts()
    for name, row in table.items():
        assert row["parameters"] == counts[name] > 0
        assert abs(row["fp16_gb"] - counts[name] * 2 / 1e9) < 0.05 + 0.01 * row["fp16_gb"]
        assert abs(row["fp32_gb"] - 2 * row["fp16_gb"]) <= 0.1 + 0.01 * row["fp32_gb"]
    assert table["openai/clip-vit-base-patch32"]["cached"] is True
    assert table["Qwen/Qwen3-VL-Embedding-2B"]["cached"] is False
    assert table["nvidia/MM-Embed"]["non_commercial"] is True
    assert table["Qwen/Qwen3-VL-Embedding-2B"]["matryoshka"] and table["Qwen/Qwen3-VL-Embedding-2B"]["dim"] == 2048
    text = runner.invoke(app, ["models", "--cache-dir", str(tmp_path)]).output
    assert "CC-BY-NC-4.0 (NON-COMMERCIAL)" in text and "weights only, computed from the parameter count" in text
    line = next(x for x in text.splitlines() if x.startswith("openai/clip-vit-base-patch32"))
    assert line.rstrip().endswith("yes")
