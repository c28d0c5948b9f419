"""``MMEmbedRetriever`` over mmembed's own Chroma store: text, image and composed image+text query bundles,
ImageNode/TextNode results with paths (no base64 unless asked), filters, reranking through the pipeline, async,
a query engine without an LLM, and bad inputs."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import ImageNode, QueryBundle, TextNode

from llama_index.postprocessor.mmembed_rerank import MMEmbedRerank
from llama_index.retrievers.mmembed import MMEmbedRetriever
from mmembed import ImageLoadError, InputError, ModelLoadError, Store
from mmembed.sources import scan_folder

from llamaindex_support import CAPTIONS, ColourWordEncoder, ToyReranker, make_colour_folder, no_network  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_network")

NOTE = "a recipe for red apple pie"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_colour_folder(tmp_path / "colours")


@pytest.fixture
def enc() -> ColourWordEncoder:
    return ColourWordEncoder()


@pytest.fixture
def store(tmp_path: Path, folder: Path, enc: ColourWordEncoder) -> Store:
    store = Store(tmp_path / "db", encoder=enc, collection="colours")
    docs = scan_folder(folder)
    store.add([d.item for d in docs], metadatas=[d.metadata for d in docs])
    store.add([NOTE], ids=["note-1"], metadatas=[{"kind": "note"}])
    assert store.count() == 5
    return store


def _stem(node: object) -> str:
    return Path(node.image_path).stem  # type: ignore[attr-defined]


def test_text_query_returns_image_and_text_nodes(store: Store) -> None:
    retriever = MMEmbedRetriever(store, similarity_top_k=2, task="text->image+text")
    assert isinstance(retriever, BaseRetriever)
    results = retriever.retrieve("red apple")
    expected = store.query("red apple", k=2, task="text->image+text")
    assert [r.node.node_id for r in results] == [h.id for h in expected]
    assert [r.score for r in results] == pytest.approx([h.score for h in expected])
    by_id = {r.node.node_id: r.node for r in results}
    note = by_id["note-1"]
    assert type(note) is TextNode and note.text == NOTE and note.metadata == {"kind": "note"}
    image = next(n for n in by_id.values() if isinstance(n, ImageNode))
    assert _stem(image) == "red" and image.text == CAPTIONS["red"] and image.metadata["source"] == "red.png"
    assert image.image is None and image.image_url is None and image.image_mimetype == "image/png"


def test_image_query_bundle(store: Store, folder: Path) -> None:
    retriever = MMEmbedRetriever(store, similarity_top_k=1, task="image->image")
    [hit] = retriever.retrieve(QueryBundle(query_str="", image_path=str(folder / "blue.png")))
    assert isinstance(hit.node, ImageNode) and _stem(hit.node) == "blue"
    assert hit.node.image_path == str(folder / "blue.png")


def test_composed_image_and_text_query(store: Store, folder: Path) -> None:
    retriever = MMEmbedRetriever(store, similarity_top_k=5, task="image->image+text")
    bundle = QueryBundle(query_str=NOTE, image_path=str(folder / "yellow.png"))
    composed = retriever.retrieve(bundle)
    expected = store.query({"image": folder / "yellow.png", "text": NOTE}, k=5, task="image->image+text")
    assert [(r.node.node_id, round(r.score, 5)) for r in composed] == [(h.id, round(h.score, 5)) for h in expected]
    image_only = retriever.retrieve(QueryBundle(query_str="", image_path=str(folder / "yellow.png")))
    text_only = retriever.retrieve(NOTE)
    # both halves of the query count: the image pulls yellow up, the text keeps the note near the top
    assert _stem(image_only[0].node) == "yellow" and text_only[0].node.node_id == "note-1"
    top2 = {r.node.node_id for r in composed[:2]}
    assert "note-1" in top2 and any(isinstance(r.node, ImageNode) and _stem(r.node) == "yellow" for r in composed[:2])


def test_base64_only_on_request(store: Store, folder: Path) -> None:
    retriever = MMEmbedRetriever(store, similarity_top_k=1, include_image_base64=True)
    [hit] = retriever.retrieve("green leaf")
    assert base64.b64decode(hit.node.image) == (folder / "green.png").read_bytes()


def test_where_filter_and_top_k(store: Store) -> None:
    only_notes = MMEmbedRetriever(store, similarity_top_k=3, where={"kind": "note"})
    assert [r.node.node_id for r in only_notes.retrieve("blue sea")] == ["note-1"]
    everything = MMEmbedRetriever(store, similarity_top_k=10)
    assert len(everything.retrieve("blue sea")) == 5
    everything.similarity_top_k = 3
    assert len(everything.retrieve("blue sea")) == 3


def test_opens_a_store_by_path(tmp_path: Path, store: Store, enc: ColourWordEncoder) -> None:
    retriever = MMEmbedRetriever(path=tmp_path / "db", collection="colours", encoder=enc, similarity_top_k=1)
    assert _stem(retriever.retrieve("the blue sea")[0].node) == "blue"


def test_reranking_through_the_pipeline(store: Store) -> None:
    reranker = ToyReranker()
    retriever = MMEmbedRetriever(store, similarity_top_k=2, fetch_k=5, reranker=reranker)
    results = retriever.retrieve("yellow")
    assert reranker.seen == [5] and len(results) == 2
    first_stage = {h.id: h.score for h in store.query("yellow", k=5)}
    for r in results:
        assert r.node.metadata["retrieval_score"] == pytest.approx(first_stage[r.node.node_id])
    assert results[0].score >= results[1].score
    assert _stem(results[0].node) == "yellow"


def test_reranker_by_name_is_loaded_once_with_the_store_encoder(store: Store, tmp_path: Path) -> None:
    retriever = MMEmbedRetriever(store, similarity_top_k=2, fetch_k=5, reranker="default")
    results = retriever.retrieve("a yellow banana")
    loaded = retriever._get_reranker()
    assert loaded is not None and loaded.encoder is store.encoder  # the default reranker re-embeds
    assert _stem(results[0].node) == "yellow" and "retrieval_score" in results[0].node.metadata
    retriever.retrieve("red")
    assert retriever._get_reranker() is loaded
    with pytest.raises(ModelLoadError, match="unknown reranker"):
        MMEmbedRetriever(store, reranker=str(tmp_path / "no-such-reranker")).retrieve("red")


def test_unreadable_stored_image_raise_or_skip(tmp_path: Path, folder: Path, enc: ColourWordEncoder) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    store = Store(tmp_path / "db2", encoder=enc)
    store.add([d.item for d in scan_folder(copy)])
    (copy / "red.png").unlink()  # the index outlives a file
    strict = MMEmbedRetriever(store, similarity_top_k=4, fetch_k=4, reranker=ToyReranker())
    with pytest.raises(ImageLoadError, match="red.png"):
        strict.retrieve("red")
    lenient = MMEmbedRetriever(store, similarity_top_k=4, fetch_k=4, reranker=ToyReranker(), on_error="skip")
    with pytest.warns(UserWarning, match="red.png"):
        results = lenient.retrieve("red")
    assert sorted(_stem(r.node) for r in results) == ["blue", "green", "yellow"]


async def test_async_retrieve_matches_sync(store: Store, folder: Path) -> None:
    retriever = MMEmbedRetriever(store, similarity_top_k=3, task="text->image")
    sync = retriever.retrieve("a green leaf")
    result = await retriever.aretrieve("a green leaf")
    assert [(r.node.node_id, r.score) for r in result] == [(r.node.node_id, r.score) for r in sync]
    img = await retriever.aretrieve(QueryBundle(query_str="", image_path=str(folder / "red.png")))
    assert _stem(img[0].node) == "red"


def test_query_engine_with_retriever_and_reranker(store: Store, folder: Path) -> None:
    engine = RetrieverQueryEngine(
        MMEmbedRetriever(store, similarity_top_k=5),
        response_synthesizer=NoText(llm=MockLLM()),
        node_postprocessors=[MMEmbedRerank(reranker=ToyReranker(), top_n=2)],
    )
    response = engine.query(QueryBundle(query_str="something blue", image_path=str(folder / "blue.png")))
    assert not response.response
    assert len(response.source_nodes) == 2 and _stem(response.source_nodes[0].node) == "blue"


def test_bad_inputs(store: Store, tmp_path: Path) -> None:
    for bad in (0, -1, "3", 2.5, True):
        with pytest.raises(InputError, match="similarity_top_k"):
            MMEmbedRetriever(store, similarity_top_k=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="fetch_k"):
        MMEmbedRetriever(store, fetch_k=0)
    with pytest.raises(InputError, match="on_error"):
        MMEmbedRetriever(store, on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="mmembed.Store"):
        MMEmbedRetriever(store="not a store")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="task"):
        MMEmbedRetriever(store, task="no-such-task")
    retriever = MMEmbedRetriever(store)
    with pytest.raises(InputError, match="no text and no image"):
        retriever.retrieve(QueryBundle(query_str=""))
    with pytest.raises(ImageLoadError, match="missing.png.*does not exist"):
        retriever.retrieve(QueryBundle(query_str="red", image_path=str(tmp_path / "missing.png")))
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageLoadError, match="junk.png"):
        retriever.retrieve(QueryBundle(query_str="", image_path=str(tmp_path / "junk.png")))
    with pytest.raises(InputError, match="empty image path"):
        retriever.retrieve(QueryBundle(query_str="red", image_path=" "))
