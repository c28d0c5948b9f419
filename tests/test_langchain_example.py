"""examples/langchain_rag.py: index a captioned image folder, retrieve -> rerank -> prompt -> chat model."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from conftest import ToyEncoder
from langchain_support import ToyReranker

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "langchain_rag.py"


@pytest.fixture(scope="module")
def example() -> Any:
    spec = importlib.util.spec_from_file_location("langchain_rag_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordingChatModel(BaseChatModel):
    """A small real chat model: answers with a fixed text and keeps the messages it was sent."""

    reply: str = "It is the yellow banana."
    received: list[list[BaseMessage]] = []

    @property
    def _llm_type(self) -> str:
        return "recording"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.received.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.reply))])


def test_without_a_chat_model_it_prints_context_and_prompt(example: Any, image_dir: Path, tmp_path: Path) -> None:
    reranker = ToyReranker()
    retriever = example.build_retriever(image_dir, tmp_path / "index", encoder=ToyEncoder(), reranker=reranker,
                                        k=2, fetch_k=4)
    chain = example.build_chain(retriever)
    out = io.StringIO()
    assert example.ask(chain, "a yellow banana", None, out=out) is None
    text = out.getvalue()
    assert "Retrieved context:" in text and "No chat model configured" in text
    assert f"a yellow banana -- image: {image_dir / 'yellow.png'}" in text
    assert "rerank" in text  # reranked: relevance scores are shown
    assert len(reranker.seen[-1][1]) == 4  # the reranker read fetch_k candidates
    context = text.split("Retrieved context:\n", 1)[1].split("\n\n", 1)[0]
    assert context.count("\n") == 1  # k=2 lines
    assert "--- system:" in text and "--- human:\na yellow banana" in text
    # indexing again is idempotent
    again = example.build_retriever(image_dir, tmp_path / "index", encoder=ToyEncoder(), reranker=None, k=3)
    assert len(again.invoke("a yellow banana")) == 3


def test_with_a_chat_model_it_sends_the_prompt_and_prints_the_answer(example: Any, image_dir: Path,
                                                                     tmp_path: Path) -> None:
    retriever = example.build_retriever(image_dir, tmp_path / "index", encoder=ToyEncoder(), reranker=ToyReranker(),
                                        k=2, fetch_k=4)
    llm = RecordingChatModel(received=[])
    out = io.StringIO()
    answer = example.ask(example.build_chain(retriever), "a yellow banana", llm, attach_images=True, out=out)
    assert answer == "It is the yellow banana." and "Answer: It is the yellow banana." in out.getvalue()
    system, images, human = llm.received[0]
    assert "Context:" in system.content and "a yellow banana -- image:" in system.content
    assert isinstance(images, HumanMessage) and [b["type"] for b in images.content][1:] == ["image", "image"]
    assert human.content == "a yellow banana"


def test_bad_folder_gives_a_clear_error(example: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = example.main(["--folder", str(tmp_path / "nowhere"), "--db", str(tmp_path / "db"), "--reranker", "none"])
    assert code == 2
    assert "is not a directory" in capsys.readouterr().err


def test_command_line_with_the_default_model(image_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--folder", str(image_dir), "--db", str(tmp_path / "db"),
         "--question", "Which fruit is yellow?", "-k", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Retrieved context:" in proc.stdout and "Which fruit is yellow?" in proc.stdout
    context = proc.stdout.split("Retrieved context:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(context) == 2 and all(" -- image: " in line and "rerank" in line for line in context)
    assert context[0].startswith("[1] a yellow banana")  # real model + default reranker
