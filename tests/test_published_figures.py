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
    assert {"README.md", "benchmarks/README.md", "docs/training.md", "src/mmembed/models/mmembed-mini-v3/MODEL_CARD.md",
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


#: a measurement with a unit (12.5 ms, 16.4 GB, 3.3 images/s, 2.5 minutes, 4.11M parameters, 48.2%) or a ratio
#: (x1.10, 0.99x); counts and model names without a decimal (8B, 12k) and integer percentages (a 95% interval)
#: are not matched, nor anything in inline code (`--threads 1`, `127.1`), which holds settings and literals.
UNIT_FIGURE = re.compile(
    r"(?<![\w.])(?:x\d+\.\d+(?![\w.])"
    r"|\d+\.\d+x(?!\w)"
    r"|\d+\.\d+ ?(?:B|M|k|%)(?![\w])"
    r"|\d[\d,]*(?:\.\d+)? ?(?:ms|s|sec|seconds?|min|minutes?|h|hours?|[KMG]i?B|(?:images|requests|queries|docs|"
    r"documents|tokens)/s)(?![\w/]))")
#: settings written with a unit (defaults, test inputs, format arithmetic), not measurements, by file
SETTINGS: dict[str, tuple[str, ...]] = {
    "docs/reliability.md": ("default 120 s", "A 1 MB text"),
    # the progress interval (a setting) and an example of the line it prints
    "README.md": ("every 30 s", "35 docs/s"),
    # the document sizes bench_text.py cuts its prose into (settings, recorded in text.json)
    # ... and the RSS sampling interval of bench_documents.py (a setting: its sampler's default)
    "benchmarks/README.md": ("1 KB", "4 KB", "sampled every 50 ms"),
    "docs/training.md": ("0.2x the learning rate", "about 0.6 MB at 224 px"),
    # checked against models.json by test_image_tower_size_in_the_cards_equals_models_json
    "src/mmembed/models/mmembed-mini-v2/MODEL_CARD.md": ("4.11M-parameter image tower",),
    "src/mmembed/models/mmembed-mini-minilm/MODEL_CARD.md": ("4.11M-parameter image tower",),
}


def _prose(text: str) -> str:
    """The text outside figure blocks, with inline code removed (fenced code stays: its comments are prose)."""
    out = []
    for line in rf.MARKER.sub("", text).splitlines():
        out.append(line if line.lstrip().startswith("```") else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def unit_figures(rel: str, text: str) -> list[str]:
    prose = _prose(text)
    for phrase in SETTINGS.get(rel, ()):
        prose = prose.replace(phrase, "")
    return [m.group() for m in UNIT_FIGURE.finditer(prose)]


def test_no_measurement_with_a_unit_outside_a_rendered_block() -> None:
    stray = {}
    for path in rf.files():
        rel = str(path.relative_to(ROOT))
        found = unit_figures(rel, path.read_text(encoding="utf-8"))
        if found:
            stray[rel] = found
    assert not stray, f"measurements outside a figures block (render them from a results file): {stray}"


def test_the_unit_rule_catches_figures_and_spares_settings() -> None:
    caught = ("enc = load_encoder(x)    # 375M params, 0.8 GB fp16 / 1.5 GB fp32",
              "p50 68.5 ms against 62.5 ms for a text query (x1.10)", "mmembed 3.3 images/s, sentence-transformers "
              "3.3 (0.99x)", "8.18 B parameters", "(about 16.4 GB)", "p95 latency 774 ms", "13.6 requests/s",
              "a 4.11M-parameter tower", "took 2.5 minutes")
    for line in caught:
        assert unit_figures("x.md", line), line
    spared = ("`--threads 1`, k=10, 2 cores, 127.0.0.1:8080, torch 2.13.0, Python 3.10+, transformers 4.42–4.43",
              "a 95% interval", "Qwen3-VL-Embedding-8B, an 8B model", "336×336 pixels, 32x32 patches",
              "`--timeout` seconds", "`0x7f.1`, `127.1`", "1,000 images", "ICLR 2025")
    for line in spared:
        assert not unit_figures("x.md", line), line


def test_image_tower_size_in_the_cards_equals_models_json() -> None:
    """The cards' "N.NNM-parameter image tower" (prose written by the training command) is the count that
    benchmarks/bench_models.py recorded for each bundled model."""
    models = json.loads((ROOT / "benchmarks" / "results" / "models.json").read_text(encoding="utf-8"))["models"]
    for name, folder in (("mmembed-mini-v2", "mmembed-mini-v2"), ("mmembed-mini-minilm", "mmembed-mini-minilm")):
        card = (ROOT / "src" / "mmembed" / "models" / folder / "MODEL_CARD.md").read_text(encoding="utf-8")
        printed = re.findall(r"(\d+\.\d+)M-parameter image tower", card)
        assert printed == [f"{models[name]['image_tower_parameters'] / 1e6:.2f}"], name


#: dataset sizes printed in prose (set-ups, not measurements), each with the results file that records it
def _tuxpaint_images(res: Any) -> int:
    rows = res("quality")["results"]
    return next(r["documents"] for r in rows if (r["dataset"], r["subset"]) == ("tuxpaint", "text->image"))


PROSE_COUNTS: tuple[tuple[str, Any], ...] = (
    (r"(\d[\d,]*)\s+(?:real\s+clip-art\s+images|Tux\s+Paint\s+(?:stamp\s+)?images|stamp\s+images"
     r"|Tux\s+Paint\s+stamps|stamps,\s+never\s+trained)", _tuxpaint_images),
    (r"(?:Indexing|indexing\s+the\s+same|#)\s+(\d[\d,]*)\s+(?:real\s+image\s+files|images)",
     lambda res: res("indexing")["images"]["count"]),
    (r"(?:on|with\s+the)\s+(\d[\d,]*)\s+(?:documents|Fashion-MNIST\s+test\s+images)",
     lambda res: res("latency")["documents"]),
)


def test_dataset_sizes_in_prose_equal_the_results_files() -> None:
    res = rf.Results()
    for pattern, expected in PROSE_COUNTS:
        want = expected(res)
        seen = 0
        for path in rf.files():
            for m in re.finditer(pattern, _prose(path.read_text(encoding="utf-8"))):
                seen += 1
                assert int(m.group(1).replace(",", "")) == want, (
                    f"{path.relative_to(ROOT)}: {m.group(0)!r} but the results file says {want}")
        assert seen, f"no sentence matches {pattern!r} any more: drop it from PROSE_COUNTS"


def test_results_files_record_how_they_were_made() -> None:
    for name in ("quality", "rerank", "latency", "indexing", "indexing_hf", "serve", "models", "fusion",
                 "modality_data", "catalog_sizes", "documents", "documents_quality", "documents_ocr_quality"):
        data = rf.Results()(name)
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
    from data_support import fetch_or_skip
    from mmembed.eval import DenseIndex, evaluate, load_dataset

    published = json.loads((ROOT / "benchmarks" / "results" / "quality.json").read_text(encoding="utf-8"))
    models = json.loads((ROOT / "benchmarks" / "results" / "models.json").read_text(encoding="utf-8"))
    enc = load_encoder("mmembed-mini")
    assert enc.name == published["encoder"] == models["models"]["mmembed-mini"]["encoder"]
    index = DenseIndex(enc, batch_size=64, show_progress=False)
    got: dict[tuple[str, str], dict[str, float]] = {}
    for name in ("tuxpaint", "python-faq"):
        data = fetch_or_skip(f"the package for {name}", lambda: load_dataset(name))
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
