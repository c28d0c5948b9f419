"""The document eval sets: built from Debian ``asymptote-doc`` (fetched on first use), a capped slice run
through ``mmembed eval`` with the default model (OCR on a few dozen pages at most)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data_support import fetch_or_skip
from mmembed.eval.datasets import load_dataset


def _load(name: str, **kw: object):  # type: ignore[no-untyped-def]
    # a failed registry fetch skips on a developer's machine and fails in CI (MMEMBED_REQUIRE_DATA=1)
    return fetch_or_skip("asymptote-doc", lambda: load_dataset(name, **kw))  # type: ignore[arg-type]


@pytest.mark.network_data
def test_asymptote_sets_are_honest() -> None:
    full = _load("asymptote-figure-page")
    [mm, text, img] = full.subsets
    assert [s.name for s in full.subsets] == ["figure->page (page image+text)", "figure->page (page text only)",
                                             "figure->page (page image only)"]
    assert len(mm) >= 40 and len(mm.pool) == 196  # every page of the manual is a candidate
    for q, rel in zip(mm.queries, mm.relevant):
        assert set(q) == {"image"} and Path(q["image"]).suffix == ".png"  # the query is the picture alone
        assert 1 <= len(rel) <= 2 and (len(rel) == 1 or rel[1] == rel[0] + 1)
    assert text.relevant == mm.relevant == img.relevant
    titles = _load("asymptote-title-figure")
    img_sub, alt_sub = titles.subsets
    pool_text = " ".join(str(x) for x in alt_sub.pool.items).lower()
    assert len(img_sub) >= 15
    for title, item in zip(img_sub.queries, img_sub.pool.items):
        assert set(item) == {"image"}  # figures are indexed as images alone: the titles are nowhere in the pool
    assert sum(t.lower() in pool_text for t in img_sub.queries) < len(img_sub) / 2


@pytest.mark.network_data
def test_mmembed_eval_runs_a_capped_slice_with_the_default_model() -> None:
    from mmembed.cli import app

    _load("asymptote-title-figure", limit=2)  # fetch (or skip) before the CLI run
    res = CliRunner().invoke(app, ["eval", "asymptote-figure-page", "asymptote-figure-page-ocr",
                                   "asymptote-title-figure", "--limit", "3", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["results"]
    subsets = {(r["dataset"], r["subset"], r["system"]) for r in rows}
    enc = next(r["system"] for r in rows if r["system"].startswith("mmembed"))
    for name in ("page image+text", "page text only", "page image only"):
        assert ("asymptote-figure-page", f"figure->page ({name})", enc) in subsets
    for name in ("page image+text", "page image+OCR text"):
        assert ("asymptote-figure-page-ocr", f"figure->page ({name})", enc) in subsets
    assert ("asymptote-title-figure", "title->figure (image only)", enc) in subsets
    for r in rows:
        assert all(0.0 <= v <= 1.0 for k, v in r["metrics"].items() if k.startswith(("R@", "MRR", "nDCG")))
    page_rows = [r for r in rows if r["dataset"].startswith("asymptote-figure-page") and r["system"] == enc]
    assert all(r["queries"] == 3 and r["documents"] <= 3 * 2 + 9 for r in page_rows)  # OCR on <= 15 pages
