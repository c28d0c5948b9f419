"""scikit-learn is optional (``mmembed[eval]``): it serves only the TF-IDF baseline of ``mmembed eval``.

Without it, the default baseline rows leave TF-IDF out with a warning, asking for it by name fails with an
InputError saying what to install.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from mmembed.errors import InputError
from mmembed.eval import EvalDataset, Pool, Subset, evaluate

ROOT = Path(__file__).resolve().parents[1]


def _dataset() -> EvalDataset:
    docs = ["red apples in a basket", "a fast blue car", "green leaves of a tree", "snow on a mountain"]
    pool = Pool(key="sk:4", items=list(docs), ids=[f"d{i}" for i in range(4)], texts=list(docs))
    sub = Subset("q->d", list(docs), [(i,) for i in range(4)], pool, "text->text", query_texts=list(docs))
    return EvalDataset("toy-text", [sub], baselines=("tfidf", "bm25"))


def test_scikit_learn_is_not_a_core_dependency() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in meta["dependencies"] if d.lower().startswith(("scikit-learn", "sklearn"))]
    assert any(d.startswith("scikit-learn") for d in meta["optional-dependencies"]["eval"])
    # CI installs .[all]: the tfidf rows stay tested (test_eval_datasets.py::test_evaluate_dense_baselines_and_reranker)
    assert "eval" in meta["optional-dependencies"]["all"][0]


def test_without_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` now raises ImportError
    with pytest.warns(UserWarning, match=r"tfidf baseline is left out.*mmembed\[eval\]"):
        rows = evaluate(_dataset(), None, show_progress=False)
    assert [r.system for r in rows] == ["chance", "bm25"]
    with pytest.raises(InputError, match=r"needs scikit-learn.*mmembed\[eval\]"):
        evaluate(_dataset(), None, baselines=["tfidf"], show_progress=False)

