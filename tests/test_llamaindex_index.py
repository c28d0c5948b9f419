"""mmembed inside LlamaIndex's own multimodal stack: ``SimpleDirectoryReader`` -> ``MultiModalVectorStoreIndex``
over real ``ChromaVectorStore`` collections (persisted, reopened, queried with text and with an image), the
index's ``as_retriever()``, and ``MMEmbedRerank`` inside a ``RetrieverQueryEngine`` with no LLM."""

from __future__ import annotations

import json
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings as ChromaSettings
from llama_index.core import SimpleDirectoryReader, StorageContext
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import ImageDocument, ImageNode, MetadataMode, QueryBundle
from llama_index.core.vector_stores.types import VectorStoreQuery
from llama_index.vector_stores.chroma import ChromaVectorStore

from llama_index.embeddings.mmembed import MMEmbedEmbedding
from llama_index.postprocessor.mmembed_rerank import MMEmbedRerank

from llamaindex_support import CAPTIONS, ColourWordEncoder, ToyReranker, make_colour_folder, no_network  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_network")


def _client(path: Path) -> chromadb.ClientAPI:
    return chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))


def _stores(client: chromadb.ClientAPI) -> tuple[ChromaVectorStore, ChromaVectorStore]:
    meta = {"hnsw:space": "cosine"}
    return (ChromaVectorStore(chroma_collection=client.get_or_create_collection("captions", metadata=meta)),
            ChromaVectorStore(chroma_collection=client.get_or_create_collection("images", metadata=meta)))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_colour_folder(tmp_path / "colours")


@pytest.fixture
def embed() -> MMEmbedEmbedding:
    return MMEmbedEmbedding(encoder=ColourWordEncoder(), task="text->image")


@pytest.fixture
def index(tmp_path: Path, folder: Path, embed: MMEmbedEmbedding) -> MultiModalVectorStoreIndex:
    docs = SimpleDirectoryReader(str(folder)).load_data()
    assert sum(isinstance(d, ImageDocument) for d in docs) == 4 and len(docs) == 8
    text_store, image_store = _stores(_client(tmp_path / "chroma"))
    ctx = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
    return MultiModalVectorStoreIndex.from_documents(docs, storage_context=ctx, embed_model=embed,
                                                     image_embed_model=embed)


def _no_text() -> NoText:
    """response_mode="no_text": the engine returns the nodes and never calls an LLM. (get_response_synthesizer
    does not hand its llm to NoText, which would then resolve Settings.llm to OpenAI: give it a MockLLM.)"""
    return NoText(llm=MockLLM())


def _name(node: object) -> str:
    path = getattr(node, "image_path", None) or getattr(node, "metadata", {}).get("file_path")
    return Path(path).stem


def test_text_query_finds_caption_and_image(index: MultiModalVectorStoreIndex) -> None:
    retriever = index.as_retriever(similarity_top_k=1, image_similarity_top_k=1)
    results = retriever.retrieve("a red apple")
    assert len(results) == 2
    text, img = results
    assert not isinstance(text.node, ImageNode) and text.node.get_content() == CAPTIONS["red"]
    assert isinstance(img.node, ImageNode) and _name(img.node) == "red"
    assert img.node.image is None  # stored by path, no base64 in Chroma or on the node
    for color in ("blue", "yellow", "green"):
        assert _name(retriever.text_to_image_retrieve(f"something {color}")[0].node) == color


def test_image_query_finds_the_same_image_first(index: MultiModalVectorStoreIndex, folder: Path) -> None:
    retriever = index.as_retriever(image_similarity_top_k=2)
    hits = retriever.image_to_image_retrieve(str(folder / "green.png"))
    assert _name(hits[0].node) == "green"
    assert hits[0].score > hits[1].score


def test_chroma_round_trip_after_reopening(tmp_path: Path, index: MultiModalVectorStoreIndex,
                                           embed: MMEmbedEmbedding, folder: Path) -> None:
    before = [(_name(n.node), round(n.score, 5)) for n in index.as_retriever().retrieve("the blue sea")]
    # what Chroma holds: our vectors, and node JSON with the image path but no base64
    raw = _client(tmp_path / "chroma").get_collection("images").get(include=["embeddings", "metadatas"])
    assert len(raw["ids"]) == 4
    for vec, meta in zip(raw["embeddings"], raw["metadatas"]):
        node = json.loads(meta["_node_content"])
        assert node["image"] is None and Path(node["image_path"]).parent == folder
        np.testing.assert_allclose(vec, embed.get_image_embedding(node["image_path"]), atol=1e-5)
    # a fresh client on the same directory, an index rebuilt from the stores alone
    text_store, image_store = _stores(_client(tmp_path / "chroma"))
    reopened = MultiModalVectorStoreIndex.from_vector_store(text_store, embed_model=embed,
                                                            image_vector_store=image_store, image_embed_model=embed)
    after = [(_name(n.node), round(n.score, 5)) for n in reopened.as_retriever().retrieve("the blue sea")]
    assert after == before and after[0][0] == "blue"


def test_composed_query_vector_against_the_image_store(index: MultiModalVectorStoreIndex,
                                                       embed: MMEmbedEmbedding, folder: Path) -> None:
    vec = embed.get_multimodal_query_embedding("yellow", str(folder / "yellow.png"))
    res = index.image_vector_store.query(VectorStoreQuery(query_embedding=vec, similarity_top_k=1))
    assert Path(res.nodes[0].image_path).stem == "yellow"


async def test_async_index_build_and_retrieve(tmp_path: Path, folder: Path, embed: MMEmbedEmbedding) -> None:
    docs = SimpleDirectoryReader(str(folder)).load_data()
    text_store, image_store = _stores(_client(tmp_path / "async-chroma"))
    ctx = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
    index = MultiModalVectorStoreIndex.from_documents(docs, storage_context=ctx, embed_model=embed,
                                                      image_embed_model=embed, use_async=True)
    results = await index.as_retriever(similarity_top_k=1, image_similarity_top_k=1).aretrieve("a yellow banana")
    names = sorted(_name(r.node) for r in results)
    assert names == ["yellow", "yellow"]
    img = await index.as_retriever(image_similarity_top_k=1).aimage_to_image_retrieve(str(folder / "blue.png"))
    assert _name(img[0].node) == "blue"


def test_rerank_inside_a_query_engine_without_llm(index: MultiModalVectorStoreIndex) -> None:
    reranker = ToyReranker()
    engine = RetrieverQueryEngine(
        index.as_retriever(similarity_top_k=4, image_similarity_top_k=4),
        response_synthesizer=_no_text(),
        node_postprocessors=[MMEmbedRerank(reranker=reranker, top_n=3)],
    )
    response = engine.query("a red apple")
    assert not response.response  # no_text: no LLM ran
    sources = response.source_nodes
    assert len(sources) == 3 and sum(reranker.seen) == 8
    scores = [s.score for s in sources]
    assert scores == sorted(scores, reverse=True)
    assert {_name(s.node) for s in sources[:2]} == {"red"}  # the caption and the image, both red
    # the scores are the reranker's own, not the retriever's; a text node is read as LlamaIndex embeds it
    text_src = next(s for s in sources if not isinstance(s.node, ImageNode))
    expected = reranker.score("a red apple", [text_src.node.get_content(metadata_mode=MetadataMode.EMBED)])[0]
    assert text_src.score == pytest.approx(expected)


async def test_async_query_engine_with_image_query(index: MultiModalVectorStoreIndex, folder: Path) -> None:
    engine = RetrieverQueryEngine(
        index.as_retriever(similarity_top_k=4, image_similarity_top_k=4),
        response_synthesizer=_no_text(),
        node_postprocessors=[MMEmbedRerank(reranker=ToyReranker(), top_n=1)],
    )
    # text retrieval from the text store, then the reranker reads the query *image* against every node
    response = await engine.aquery(QueryBundle(query_str="fruit", image_path=str(folder / "yellow.png")))
    assert len(response.source_nodes) == 1 and _name(response.source_nodes[0].node) == "yellow"
