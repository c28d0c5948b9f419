"""The example apps write under the mmembed cache (or ``--out``), never into the directory they are run from."""

from __future__ import annotations

import importlib.util
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from llamaindex_support import ColourWordEncoder, make_colour_folder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"{name}_example_out", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An empty working directory (standing in for the repository) and the cache directory."""
    work, cache = tmp_path / "repo", tmp_path / "cache"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MMEMBED_CACHE", str(cache))
    return work, cache


def run(main: Any, *args: Any, **kwargs: Any) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(*args, **kwargs)
    return code, err.getvalue()


def test_llamaindex_example_defaults_to_the_cache(elsewhere: tuple[Path, Path], tmp_path: Path) -> None:
    work, cache = elsewhere
    folder = make_colour_folder(tmp_path / "pics")
    argv = ["--folder", str(folder), "--reranker", "none", "-k", "1", "--question", "a red apple"]
    code, err = run(load("llamaindex_rag").main, argv, encoder=ColourWordEncoder())
    assert code == 0, err
    assert list(work.iterdir()) == []
    assert (cache / "examples" / "llamaindex_rag" / "chroma").is_dir()
    code, err = run(load("llamaindex_rag").main, [*argv, "--out", str(tmp_path / "chosen")], encoder=ColourWordEncoder())
    assert code == 0, err
    assert (tmp_path / "chosen" / "chroma").is_dir() and list(work.iterdir()) == []


def test_langchain_example_defaults_to_the_cache(elsewhere: tuple[Path, Path], image_dir: Path) -> None:
    work, cache = elsewhere
    code, err = run(load("langchain_rag").main, ["--folder", str(image_dir), "--reranker", "none", "-k", "1",
                                                 "--question", "a yellow banana"])
    assert code == 0, err
    assert list(work.iterdir()) == []
    assert (cache / "examples" / "langchain_rag" / "index").is_dir()
