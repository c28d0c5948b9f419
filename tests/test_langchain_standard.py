"""LangChain's own standard test suites (langchain-tests) run against the mmembed adapters.

Each suite runs twice where the model allows: with ``ToyEncoder`` (a real, tiny Encoder: fast, and the store
contents are known) and with the real bundled default model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from conftest import ToyEncoder
from langchain_mmembed import MMEmbedEmbeddings, MMEmbedRetriever
from langchain_support import COLOURS, colour_images

TOY = ToyEncoder()
class TestMMEmbedEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[MMEmbedEmbeddings]:
        return MMEmbedEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"encoder": TOY, "task": "text->image"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"MMEMBED_MODEL": "models/my-finetuned-mini", "MMEMBED_DEVICE": "cpu"},
            {"task": "question->passage"},
            {"model": "models/my-finetuned-mini", "device": "cpu", "task": "question->passage"},
        )


class TestMMEmbedEmbeddingsToy(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[MMEmbedEmbeddings]:
        return MMEmbedEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"encoder": TOY, "task": "text->text"}


class TestMMEmbedEmbeddingsDefault(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[MMEmbedEmbeddings]:
        return MMEmbedEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "default", "device": "cpu", "task": "text->text"}


def _index(db: Path, images: Path, encoder: Any) -> None:
    """A store of five image+caption documents plus two text-only ones."""
    retriever = MMEmbedRetriever(path=str(db), encoder=encoder, collection="standard")
    paths = colour_images(images)
    docs = [Document(caption, metadata={"image": str(paths[name]), "colour": name}, id=name)
            for name, (_, caption) in COLOURS.items()]
    docs += [Document("apples grow on trees in the orchard", metadata={"colour": "none"}, id="orchard"),
             Document("bananas are rich in potassium", metadata={"colour": "none"}, id="potassium")]
    result = retriever.add_documents(docs)
    assert len(result.added) == len(docs)


@pytest.fixture(scope="class")
def toy_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("lc-standard-toy")
    _index(base / "db", base / "images", TOY)
    request.cls.db = base / "db"


@pytest.fixture(scope="class")
def default_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    from mmembed.pipeline import as_encoder

    base = tmp_path_factory.mktemp("lc-standard-default")
    _index(base / "db", base / "images", as_encoder("default", device="cpu"))
    request.cls.db = base / "db"


@pytest.mark.usefixtures("toy_store")
class TestMMEmbedRetrieverToy(RetrieversIntegrationTests):

    @property
    def retriever_constructor(self) -> type[MMEmbedRetriever]:
        return MMEmbedRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"path": str(self.db), "encoder": TOY, "collection": "standard", "task": "text->image"}

    @property
    def retriever_query_example(self) -> str:
        return "a red apple"


@pytest.mark.usefixtures("default_store")
class TestMMEmbedRetrieverDefault(RetrieversIntegrationTests):

    @property
    def retriever_constructor(self) -> type[MMEmbedRetriever]:
        return MMEmbedRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"path": str(self.db), "model": "default", "device": "cpu", "collection": "standard",
                "task": "question->passage"}

    @property
    def retriever_query_example(self) -> str:
        return "Which fruit is yellow?"
