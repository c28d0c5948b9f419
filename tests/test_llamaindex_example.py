"""examples/llamaindex_rag.py end to end on a small captioned folder (a toy encoder stands in for the model),
so the documented command keeps working: text, image and composed queries, reranking, index reuse."""

from __future__ import annotations

import importlib.util
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from llama_index.embeddings.mmembed import MMEmbedEmbedding
from llama_index.postprocessor.mmembed_rerank import MMEmbedRerank

from llamaindex_support import ColourWordEncoder, ToyReranker, make_colour_folder, no_network  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_network")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "llamaindex_rag.py"


@pytest.fixture(scope="module")
def example():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("llamaindex_rag_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _run(example, argv: list[str], encoder: ColourWordEncoder) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = example.main(argv, encoder=encoder)
    return code, out.getvalue(), err.getvalue()


def test_main_runs_offline_and_reuses_its_index(example, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = make_colour_folder(tmp_path / "pics")
    argv = ["--folder", str(folder), "--db", str(tmp_path / "db"), "--reranker", "none", "-k", "2",
            "--question", "a red apple", "--image", str(folder / "blue.png"), "--image-text", "the blue sea"]
    code, out, err = _run(example, argv, ColourWordEncoder())
    assert code == 0, err
    section = out.split("=== a red apple\n", 1)[1]
    assert section.startswith("[1] picture red.png: 'a red apple on a table'")
    assert "Prompt for an LLM:" in out and "Question: a red apple" in out
    assert "=== pictures like blue.png\n[1] picture blue.png: 'the blue sea under the sky'" in out
    assert "=== blue.png + 'the blue sea'\n[1] picture blue.png" in out
    assert "Indexing 4 captioned images" in err
    code, out2, err2 = _run(example, argv, ColourWordEncoder())
    assert code == 0 and "Reusing the index" in err2 and "4 already indexed" in err2
    assert out2 == out
    # another encoder: the collections are rebuilt, not mixed
    code, _, err3 = _run(example, argv, ColourWordEncoder(name="other-encoder"))
    assert code == 0 and "Indexing 4 captioned images" in err3


def test_missing_reranker_falls_back_and_bad_image_is_reported(example, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = make_colour_folder(tmp_path / "pics")
    argv = ["--folder", str(folder), "--db", str(tmp_path / "db"), "--reranker", str(tmp_path / "no-reranker"),
            "--question", "green", "--image", str(tmp_path / "missing.png")]
    code, out, err = _run(example, argv, ColourWordEncoder())
    assert "warning: reranker" in err and "=== green" in out
    assert code == 2 and "missing.png" in err and "does not exist" in err


def test_pieces_with_a_reranker(example, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = make_colour_folder(tmp_path / "pics")
    enc = ColourWordEncoder()
    image_embed = MMEmbedEmbedding(encoder=enc, task="text->image")
    text_embed = MMEmbedEmbedding(encoder=enc, task="text->text")
    index = example.build_index(folder, tmp_path / "chroma", text_embed, image_embed, limit=3)
    reranker = MMEmbedRerank(reranker=ToyReranker(enc), top_n=2)
    out = io.StringIO()
    nodes = example.ask(example.build_engine(index, reranker, k=2, fetch_k=3), "blue", 2, out=out)
    assert len(nodes) == 2 and nodes[0].score >= nodes[1].score
    assert "blue" in out.getvalue().split("\n[1] ", 1)[1].splitlines()[0]
    # limit=3: blue, green, red (sorted); yellow was not indexed
    assert "yellow" not in out.getvalue().split("Prompt")[0]
    nodes = example.ask_with_image(index, reranker, folder / "green.png", k=1, fetch_k=3, out=io.StringIO())
    assert Path(nodes[0].node.image_path).name == "green.png"
