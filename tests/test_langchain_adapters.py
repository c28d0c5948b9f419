"""MMEmbedEmbeddings, MMEmbedRetriever and MMEmbedRerank beyond the standard suites: what each value means,
image and interleaved inputs, async behaviour, and bad inputs."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage
from pydantic import ValidationError

from conftest import ToyEncoder
from langchain_mmembed import (
    MMEmbedEmbeddings,
    MMEmbedRerank,
    MMEmbedRetriever,
    document_to_input,
    query_to_input,
)
from langchain_support import COLOURS, ToyReranker, colour_images, corrupt_image
from mmembed import ImageLoadError, InputError, ModelLoadError, Store, coerce


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    return colour_images(tmp_path / "images")


@pytest.fixture
def retriever(tmp_path: Path, toy_encoder: ToyEncoder, images: dict[str, Path]) -> MMEmbedRetriever:
    r = MMEmbedRetriever(path=str(tmp_path / "db"), encoder=toy_encoder, k=3)
    docs = [Document(caption, metadata={"image": str(images[name]), "colour": name}, id=name)
            for name, (_, caption) in COLOURS.items()]
    docs.append(Document("a poem about the sea, no picture", metadata={"colour": "none"}, id="poem"))
    r.add_documents(docs)
    return r


# ---- MMEmbedEmbeddings -------------------------------------------------------------------------------------
def test_embeddings_match_the_engine_and_apply_the_query_instruction(toy_encoder: ToyEncoder) -> None:
    emb = MMEmbedEmbeddings(encoder=toy_encoder, task="question->passage")
    docs = emb.embed_documents(["apples are red", "the sea is blue"])
    assert np.allclose(docs, toy_encoder.encode_documents(["apples are red", "the sea is blue"]), atol=1e-6)
    query = emb.embed_query("what colour are apples?")
    expected = toy_encoder.encode_queries(["what colour are apples?"], task="question->passage")[0]
    assert np.allclose(query, expected, atol=1e-6)
    # the instruction really changes the query vector, and free text wins over the task
    plain = MMEmbedEmbeddings(encoder=toy_encoder).embed_query("what colour are apples?")
    assert not np.allclose(query, plain, atol=1e-4)
    custom = MMEmbedEmbeddings(encoder=toy_encoder, task="question->passage", instruction="Find fruit.")
    assert np.allclose(custom.embed_query("what colour are apples?"),
                       toy_encoder.encode_queries(["what colour are apples?"], instruction="Find fruit.")[0], atol=1e-6)
    assert all(isinstance(x, float) for x in query) and len(query) == toy_encoder.dim


def test_embed_image_and_interleaved_documents(toy_encoder: ToyEncoder, images: dict[str, Path]) -> None:
    emb = MMEmbedEmbeddings(encoder=toy_encoder)
    vecs = np.array(emb.embed_image(uris=[str(images["red"]), str(images["blue"])]))
    assert vecs.shape == (2, toy_encoder.dim)
    assert np.allclose(vecs[0], toy_encoder.encode_documents([{"image": images["red"]}])[0], atol=1e-6)
    doc = Document("a red apple", metadata={"image": str(images["red"])})
    both = np.array(emb.embed_langchain_documents([doc, Document("a red apple")]))
    assert np.allclose(both[0], toy_encoder.encode_documents([{"image": images["red"], "text": "a red apple"}])[0],
                       atol=1e-6)
    assert not np.allclose(both[0], both[1], atol=1e-3)  # the image counts
    several = Document("two pictures", metadata={"image": [str(images["red"]), str(images["blue"])]})
    assert document_to_input(several) == {"images": [str(images["red"]), str(images["blue"])],
                                          "text": "two pictures"}
    assert np.allclose(emb.embed_interleaved([{"image": images["red"], "text": "a red apple"}])[0], both[0], atol=1e-6)
    # an image query (dict) goes through embed_query with the query instruction
    q = emb.embed_query({"image": str(images["red"])})  # type: ignore[arg-type]
    assert np.allclose(q, toy_encoder.encode_queries([{"image": images["red"]}])[0], atol=1e-6)


async def test_async_embeddings_do_not_block_the_event_loop() -> None:
    class SlowEncoder(ToyEncoder):
        def _encode_batch(self, items, *, instruction, is_query):  # type: ignore[no-untyped-def]
            time.sleep(0.25)
            return super()._encode_batch(items, instruction=instruction, is_query=is_query)

    emb = MMEmbedEmbeddings(encoder=SlowEncoder())
    ticks_during = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks_during
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks_during += not done.is_set()

    async def work() -> list[list[float]]:
        try:
            docs = await emb.aembed_documents(["one", "two"])
            await emb.aembed_query("three")
            return docs
        finally:
            done.set()

    docs, _ = await asyncio.gather(work(), ticker())
    assert len(docs) == 2
    assert ticks_during >= 10, "the event loop was blocked while embedding"


async def test_async_results_equal_sync(toy_encoder: ToyEncoder, images: dict[str, Path]) -> None:
    emb = MMEmbedEmbeddings(encoder=toy_encoder, task="text->image")
    assert await emb.aembed_query("red") == emb.embed_query("red")
    assert await emb.aembed_documents(["a", "b"]) == emb.embed_documents(["a", "b"])
    assert await emb.aembed_image([str(images["red"])]) == emb.embed_image([str(images["red"])])


def test_embeddings_bad_inputs_are_clear(toy_encoder: ToyEncoder, tmp_path: Path) -> None:
    emb = MMEmbedEmbeddings(encoder=toy_encoder)
    with pytest.raises(InputError, match="empty"):
        emb.embed_query("")
    with pytest.raises(InputError, match="empty"):
        emb.embed_query("   ")
    with pytest.raises(InputError, match="embed_image"):
        emb.embed_documents(["fine", 42])  # type: ignore[list-item]
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError, match="nope.png"):
        emb.embed_image([str(missing)])
    bad = corrupt_image(tmp_path / "broken.png")
    with pytest.raises(ImageLoadError, match="broken.png"):
        emb.embed_image([str(bad)])
    with pytest.raises(InputError, match="metadata\\['image'\\]"):
        emb.embed_langchain_documents([Document("x", metadata={"image": 3})])
    with pytest.raises(ValidationError, match="unknown task"):
        MMEmbedEmbeddings(encoder=toy_encoder, task="text->smell")
    with pytest.raises(ValidationError):
        MMEmbedEmbeddings(encoder=toy_encoder, batch_size=0)
    assert emb.embed_documents([]) == []


def test_model_directory_is_loaded_once_and_shared(tmp_path: Path) -> None:
    """``model=`` a directory goes through mmembed.load_encoder (here a freshly initialised mmembed-mini, whose
    frozen text tower is already a real sentence encoder), and instances with the same settings share it."""
    import torch

    from mmembed.encoders.mini import MiniEncoder, MiniModel, default_config

    torch.manual_seed(0)
    model_dir = MiniEncoder(MiniModel(default_config()), device="cpu").save(tmp_path / "mini")
    emb = MMEmbedEmbeddings(model=str(model_dir), device="cpu", task="question->passage")
    docs = emb.embed_documents(["The Eiffel tower is in Paris.", "Bananas are rich in potassium."])
    query = emb.embed_query("Where is the Eiffel tower?")
    assert len(query) == 384 and float(np.dot(docs[0], query)) > float(np.dot(docs[1], query))
    assert MMEmbedEmbeddings(model=str(model_dir), device="cpu").client is emb.client
    r = MMEmbedRetriever(path=str(tmp_path / "db"), model=str(model_dir), device="cpu", k=1)
    r.add_documents([Document("The Eiffel tower is in Paris.", id="paris"),
                     Document("Bananas are rich in potassium.", id="banana")])
    assert r.get_store().encoder is emb.client
    assert [d.id for d in r.invoke("Which fruit has potassium?", task="question->passage")] == ["banana"]


def test_model_name_is_loaded_lazily_and_errors_clearly() -> None:
    emb = MMEmbedEmbeddings(model="no/such/model-dir")  # constructing does not load
    with pytest.raises(ModelLoadError, match="unknown encoder 'no/such/model-dir'"):
        emb.embed_query("hello")


# ---- MMEmbedRetriever ------------------------------------------------------------------------------------
def test_retriever_returns_documents_with_text_images_id_and_score(retriever: MMEmbedRetriever,
                                                                   images: dict[str, Path]) -> None:
    docs = retriever.invoke({"image": str(images["red"]), "text": "a red apple"})
    assert len(docs) == 3
    top = docs[0]
    assert top.id == "red"
    assert top.page_content == "a red apple"
    assert top.metadata["image"] == str(images["red"])
    assert top.metadata["colour"] == "red"
    assert top.metadata["modality"] == "image+text"
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.99
    # the score is the store's cosine similarity
    hit = retriever.get_store().query({"image": str(images["red"]), "text": "a red apple"}, k=1)[0]
    assert hit.id == "red" and abs(hit.score - top.metadata["score"]) < 1e-6


def test_retriever_query_forms(retriever: MMEmbedRetriever, images: dict[str, Path]) -> None:
    by_path = retriever.invoke(images["blue"], k=1)  # type: ignore[arg-type]
    assert [d.id for d in by_path] == ["blue"]
    b64 = base64.b64encode(images["green"].read_bytes()).decode()
    message = HumanMessage(content=[{"type": "image", "base64": b64, "mime_type": "image/png"}])
    assert [d.id for d in retriever.invoke(message, k=1)] == ["green"]  # type: ignore[arg-type]
    blocks = [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}}]
    assert [d.id for d in retriever.invoke(blocks, k=1)] == ["green"]  # type: ignore[arg-type]
    text = retriever.invoke("a poem about the sea", k=1)
    assert [d.id for d in text] == ["poem"]
    assert "image" not in text[0].metadata and text[0].metadata["modality"] == "text"
    assert coerce(query_to_input([{"type": "text", "text": "hi"}])).text == "hi"


def test_retriever_per_call_options(retriever: MMEmbedRetriever, toy_encoder: ToyEncoder) -> None:
    assert len(retriever.invoke("apple")) == 3
    assert len(retriever.invoke("apple", k=5)) == 5
    only_none = retriever.invoke("apple", k=5, where={"colour": "none"})
    assert [d.id for d in only_none] == ["poem"]
    filtered = MMEmbedRetriever(store=retriever.get_store(), where={"colour": {"$in": ["red", "blue"]}}, k=5)
    assert {d.id for d in filtered.invoke("apple")} == {"red", "blue"}
    # task/instruction reach the encoder: the score changes with the instruction
    plain = {d.id: d.metadata["score"] for d in retriever.invoke("a red apple", k=6)}
    instructed = {d.id: d.metadata["score"] for d in retriever.invoke("a red apple", k=6, instruction="Find fruit.")}
    stored = {h.id: h.as_input() for h in retriever.get_store().get(list(plain))}
    qvec = toy_encoder.encode_queries(["a red apple"], instruction="Find fruit.")[0]
    for rid, score in instructed.items():
        assert score == pytest.approx(float(toy_encoder.encode_documents([stored[rid]])[0] @ qvec), abs=1e-5)
        assert score != pytest.approx(plain[rid], abs=1e-6)


async def test_retriever_async_equals_sync(retriever: MMEmbedRetriever) -> None:
    sync = retriever.invoke("the blue sea", k=2)
    got = await retriever.ainvoke("the blue sea", k=2)
    assert [(d.id, d.metadata["score"]) for d in got] == [(d.id, d.metadata["score"]) for d in sync]


def test_retriever_bad_inputs_are_clear_and_do_not_touch_the_store(retriever: MMEmbedRetriever,
                                                                    tmp_path: Path) -> None:
    store = retriever.get_store()
    before = sorted(store.ids())
    with pytest.raises(InputError, match="empty"):
        retriever.invoke("")
    with pytest.raises(ImageLoadError, match="missing.png"):
        retriever.invoke({"image": str(tmp_path / "missing.png")})
    with pytest.raises(InputError, match="k must be a positive integer"):
        retriever.invoke("x", k=0)
    bad = corrupt_image(tmp_path / "broken.png")
    good = Document("fine", metadata={"image": str(bad.with_name("red.png"))})
    with pytest.raises(ImageLoadError, match="broken.png"):
        retriever.add_documents([Document("first, fine", id="new1"),
                                 Document("broken", metadata={"image": str(bad)}, id="new2"), good])
    with pytest.raises(ImageLoadError, match="gone.png"):
        retriever.add_documents([Document("gone", metadata={"image": str(tmp_path / "gone.png")})])
    assert sorted(store.ids()) == before
    skipped = retriever.add_documents([Document("kept", id="kept"),
                                       Document("broken", metadata={"image": str(bad)}, id="bad")], on_error="skip")
    assert skipped.added == ["kept"] and [s.id for s in skipped.skipped] == ["bad"]
    assert sorted(store.ids()) == sorted(before + ["kept"])
    with pytest.raises(ValidationError, match="not both"):
        MMEmbedRetriever(path=str(tmp_path / "a"), url="http://localhost:8000")
    with pytest.raises(ValidationError, match="unknown task"):
        MMEmbedRetriever(path=str(tmp_path / "a"), task="nope")


def test_retriever_refuses_a_store_built_by_another_encoder(retriever: MMEmbedRetriever) -> None:
    from mmembed import EncoderMismatchError

    other = MMEmbedRetriever(path=retriever.path, encoder=ToyEncoder(dim=32, name="other"))
    with pytest.raises(EncoderMismatchError, match="toy-v1"):
        other.invoke("apple")


def test_add_documents_ids_default_to_content_hash(tmp_path: Path, toy_encoder: ToyEncoder) -> None:
    r = MMEmbedRetriever(path=str(tmp_path / "db"), encoder=toy_encoder)
    first = r.add_documents([Document("same text"), Document("named", id="n1")])
    again = r.add_documents([Document("same text")])
    assert first.added[1] == "n1" and len(first.added[0]) == 64
    assert again.unchanged == [first.added[0]] and r.get_store().count() == 2


# ---- MMEmbedRerank ---------------------------------------------------------------------------------------
def test_rerank_scores_text_and_images_and_returns_top_n_in_order(images: dict[str, Path]) -> None:
    reranker = ToyReranker()
    docs = [Document(caption, metadata={"image": str(images[name])}, id=name) for name, (_, caption) in COLOURS.items()]
    docs.append(Document("no picture here", id="text"))
    rr = MMEmbedRerank(reranker=reranker, top_n=2, task="image->image")
    out = rr.compress_documents(docs, {"image": str(images["yellow"])})  # type: ignore[arg-type]
    assert [d.id for d in out][0] == "yellow" and len(out) == 2
    scores = reranker.score({"image": str(images["yellow"])}, [document_to_input(d) for d in docs])
    by_id = dict(zip([d.id for d in docs], scores))
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx(sorted(scores, reverse=True)[:2])
    assert all(d.metadata["relevance_score"] == pytest.approx(by_id[d.id]) for d in out)
    # the reranker saw each document's image then its text, and the task instruction
    query, candidates, instruction = reranker.seen[0]
    assert candidates[0].modality == "image+text" and candidates[0].image_uris == [str(images["red"])]
    assert candidates[-1].modality == "text"
    assert instruction == "Find an image that looks similar to the given image."
    assert "relevance_score" not in docs[0].metadata  # inputs are not modified
    everything = MMEmbedRerank(reranker=reranker, top_n=None).compress_documents(docs, "a yellow banana")
    assert len(everything) == len(docs)
    assert MMEmbedRerank(reranker=reranker).compress_documents([], "q") == []


def test_rerank_reads_base64_images_written_by_chroma_add_images(images: dict[str, Path]) -> None:
    b64 = base64.b64encode(images["black"].read_bytes()).decode()
    docs = [Document(b64, id="b64-black"), Document("a black cat at night", id="text")]
    assert isinstance(document_to_input(docs[0])["image"], bytes)
    out = MMEmbedRerank(reranker=ToyReranker(), top_n=1).compress_documents(docs, {"image": str(images["black"])})
    assert out[0].id == "b64-black"


async def test_rerank_async_equals_sync(images: dict[str, Path]) -> None:
    docs = [Document(c, metadata={"image": str(images[n])}, id=n) for n, (_, c) in COLOURS.items()]
    rr = MMEmbedRerank(reranker=ToyReranker(), top_n=3)
    sync = rr.compress_documents(docs, "the blue sea")
    got = await rr.acompress_documents(docs, "the blue sea")
    assert [(d.id, d.metadata["relevance_score"]) for d in got] == [(d.id, d.metadata["relevance_score"]) for d in sync]


def test_rerank_bad_inputs(images: dict[str, Path], tmp_path: Path) -> None:
    docs = [Document("a red apple", metadata={"image": str(images["red"])}, id="red"),
            Document("lost", metadata={"image": str(tmp_path / "lost.png")}, id="lost")]
    rr = MMEmbedRerank(reranker=ToyReranker(), top_n=5)
    with pytest.raises(InputError, match="empty"):
        rr.compress_documents(docs[:1], "")
    with pytest.raises(ImageLoadError, match="'lost'.*lost.png"):
        rr.compress_documents(docs, "apple")
    skipping = MMEmbedRerank(reranker=ToyReranker(), top_n=5, on_error="skip")
    with pytest.warns(UserWarning, match="lost"):
        out = skipping.compress_documents(docs, "apple")
    assert [d.id for d in out] == ["red"]
    with pytest.raises(ValidationError):
        MMEmbedRerank(reranker=ToyReranker(), top_n=0)


def test_retriever_with_built_in_rerank_stage(retriever: MMEmbedRetriever, images: dict[str, Path]) -> None:
    reranker = ToyReranker()
    r = MMEmbedRetriever(store=retriever.get_store(), reranker=reranker, k=2, fetch_k=5, task="text->image")
    docs = r.invoke("a yellow banana")
    assert len(docs) == 2
    rel = [d.metadata["relevance_score"] for d in docs]
    assert rel == sorted(rel, reverse=True)
    # the reranker saw the fetch_k candidates with their stored images, and the task instruction
    query, candidates, instruction = reranker.seen[-1]
    assert len(candidates) == 5 and query.text == "a yellow banana"
    assert instruction == "Retrieve an image that matches the given caption."
    assert any(c.image_uris for c in candidates)
    # relevance_score is the reranker's score of that document; score stays the first-stage cosine
    stored = {h.id: h for h in retriever.get_store().get([d.id for d in docs])}
    for d in docs:
        expected = reranker.score("a yellow banana", [stored[d.id].as_input()])[0]
        assert d.metadata["relevance_score"] == pytest.approx(expected, abs=1e-6)
        assert -1.0 <= d.metadata["score"] <= 1.0
    assert len(r.invoke("a yellow banana", k=1)) == 1
    with pytest.raises(InputError, match="fetch_k"):
        r.invoke("a yellow banana", k=4, fetch_k=2)
