"""The LlamaIndex adapters with the real bundled default encoder (mmembed-mini) and default reranker.

The contract test runs on an image drawn here; the retrieval tests use eight Tux Paint stamps (the demo's
data, fetched once into the mmembed cache, hence ``network_data``) through SimpleDirectoryReader, Chroma,
MultiModalVectorStoreIndex, a query engine with MMEmbedRerank, and MMEmbedRetriever with composed queries.
"""

from __future__ import annotations

from io import BytesIO
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
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.vector_stores.chroma import ChromaVectorStore
from PIL import Image, ImageDraw

from llama_index.embeddings.mmembed import MMEmbedEmbedding
from llama_index.postprocessor.mmembed_rerank import MMEmbedRerank
from llama_index.retrievers.mmembed import MMEmbedRetriever
from mmembed import Store

from data_support import fetch_or_skip
from mmembed.sources import scan_folder

STAMPS = [
    "food/fruit/apple_red", "food/fruit/apple_green", "food/fruit/banana", "food/pizza", "animals/birds/duck",
    "vehicles/locomotive/cartoon/trainSign", "town/houses/cartoon/cathedral", "plants/trees/tree336",
]


@pytest.fixture(scope="module")
def image_embed() -> MMEmbedEmbedding:
    return MMEmbedEmbedding(task="text->image")  # "default": the checkpoint shipped in the package


@pytest.fixture(scope="module")
def text_embed(image_embed: MMEmbedEmbedding) -> MMEmbedEmbedding:
    return MMEmbedEmbedding(encoder=image_embed.encoder, task="text->text")


def test_default_embedding_contract(image_embed: MMEmbedEmbedding, tmp_path: Path) -> None:
    assert image_embed.model_name == "default" and image_embed.dim == 384
    img = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(img).ellipse((10, 10, 86, 86), fill="red")
    img.save(tmp_path / "disc.png")
    by_path = np.asarray(image_embed.get_image_embedding(str(tmp_path / "disc.png")))
    by_bytes = np.asarray(image_embed.get_image_embedding(BytesIO((tmp_path / "disc.png").read_bytes())))
    assert by_path.shape == (384,) and np.allclose(by_path, by_bytes, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(by_path), 1.0, atol=1e-4)
    enc = image_embed.encoder
    np.testing.assert_allclose(image_embed.get_query_embedding("a red ball"),
                               enc.encode_queries(["a red ball"], task="text->image")[0], atol=1e-5)
    np.testing.assert_allclose(image_embed.get_text_embedding("a red ball"),
                               enc.encode_documents(["a red ball"])[0], atol=1e-5)


@pytest.fixture(scope="module")
def stamps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmembed.data.tuxpaint import export_folder, load_tuxpaint

    by_id = {s.id: s for s in fetch_or_skip("the Tux Paint stamps", load_tuxpaint)}
    return export_folder(tmp_path_factory.mktemp("stamps"), [by_id[i] for i in STAMPS])


def _name(n: NodeWithScore) -> str:
    return Path(getattr(n.node, "image_path", None) or n.node.metadata["file_path"]).stem.split("__")[-1]


@pytest.fixture(scope="module")
def index(stamps: Path, text_embed: MMEmbedEmbedding, image_embed: MMEmbedEmbedding,
          tmp_path_factory: pytest.TempPathFactory) -> MultiModalVectorStoreIndex:
    client = chromadb.PersistentClient(path=str(tmp_path_factory.mktemp("chroma")),
                                       settings=ChromaSettings(anonymized_telemetry=False))
    meta = {"hnsw:space": "cosine"}
    ctx = StorageContext.from_defaults(
        vector_store=ChromaVectorStore(chroma_collection=client.get_or_create_collection("captions", metadata=meta)),
        image_store=ChromaVectorStore(chroma_collection=client.get_or_create_collection("images", metadata=meta)),
    )
    return MultiModalVectorStoreIndex.from_documents(SimpleDirectoryReader(str(stamps)).load_data(),
                                                     storage_context=ctx, embed_model=text_embed,
                                                     image_embed_model=image_embed)


@pytest.mark.network_data
def test_text_and_image_queries_on_stamps(index: MultiModalVectorStoreIndex, stamps: Path) -> None:
    retriever = index.as_retriever(similarity_top_k=1, image_similarity_top_k=1)
    assert _name(retriever.text_to_image_retrieve("A red apple.")[0]) == "apple_red"
    assert _name(retriever.text_to_image_retrieve("A green apple.")[0]) == "apple_green"
    assert _name(retriever.text_retrieve("a duck")[0]) == "duck"
    assert _name(retriever.image_to_image_retrieve(str(stamps / "food__fruit__banana.png"))[0]) == "banana"


@pytest.mark.network_data
def test_default_reranker_in_a_query_engine(index: MultiModalVectorStoreIndex, image_embed: MMEmbedEmbedding) -> None:
    engine = RetrieverQueryEngine(
        index.as_retriever(similarity_top_k=4, image_similarity_top_k=4),
        response_synthesizer=NoText(llm=MockLLM()),
        node_postprocessors=[MMEmbedRerank(encoder=image_embed, top_n=3)],
    )
    sources = engine.query("A yellow banana.").source_nodes
    assert len(sources) == 3 and _name(sources[0]) == "banana"
    assert sources[0].score >= sources[1].score >= sources[2].score


@pytest.mark.network_data
def test_composed_query_on_mmembed_store(stamps: Path, image_embed: MMEmbedEmbedding, tmp_path: Path) -> None:
    store = Store(tmp_path / "db", encoder=image_embed.encoder)
    docs = scan_folder(stamps)
    store.add([d.item for d in docs], metadatas=[d.metadata for d in docs])
    retriever = MMEmbedRetriever(store, similarity_top_k=len(STAMPS), task="image->image+text")
    red = str(stamps / "food__fruit__apple_red.png")
    image_only = {_name(n): n.score for n in retriever.retrieve(QueryBundle(query_str="", image_path=red))}
    composed = {_name(n): n.score for n in retriever.retrieve(QueryBundle(query_str="A green apple.", image_path=red))}
    assert max(image_only, key=image_only.get) == "apple_red"
    # the text half of the query pulls the green apple towards the top: its margin to the red apple (the
    # query image itself) shrinks. A rank check cannot show this when the green apple is already second.
    assert composed["apple_green"] - composed["apple_red"] > image_only["apple_green"] - image_only["apple_red"]
    reranked = MMEmbedRetriever(store, similarity_top_k=2, fetch_k=len(STAMPS), reranker="default")
    assert _name(reranked.retrieve("A banana.")[0]) == "banana"
