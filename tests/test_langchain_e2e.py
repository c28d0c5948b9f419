"""End to end with real LangChain pieces: langchain_chroma.Chroma, LCEL chains with a ChatPromptTemplate,
ContextualCompressionRetriever, and a Chroma server reached by URL."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from conftest import ToyEncoder
from langchain_mmembed import MMEmbedEmbeddings, MMEmbedRerank, MMEmbedRetriever, add_interleaved_documents
from langchain_support import COLOURS, ToyReranker, colour_images, corrupt_image
from mmembed import ImageLoadError


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    return colour_images(tmp_path / "images")


def _chroma(tmp_path: Path, embeddings: MMEmbedEmbeddings, name: str = "pictures") -> Chroma:
    return Chroma(name, embedding_function=embeddings, persist_directory=str(tmp_path / "chroma"))


# ---- langchain_chroma.Chroma, unmodified ----------------------------------------------------------------
def test_chroma_add_images_and_similarity_search_by_image(tmp_path: Path, toy_encoder: ToyEncoder,
                                                          images: dict[str, Path]) -> None:
    emb = MMEmbedEmbeddings(encoder=toy_encoder)
    db = _chroma(tmp_path, emb)
    names = list(COLOURS)
    ids = db.add_images(uris=[str(images[n]) for n in names], metadatas=[{"colour": n} for n in names], ids=names)
    assert ids == names
    stored = db.get(ids=["red"], include=["embeddings", "documents"])
    assert np.allclose(stored["embeddings"][0], emb.embed_image([str(images["red"])])[0], atol=1e-6)
    assert base64.b64decode(stored["documents"][0]) == images["red"].read_bytes()
    for name in ("red", "blue", "black"):
        found = db.similarity_search_by_image(uri=str(images[name]), k=2)
        assert found[0].metadata["colour"] == name
        assert found[0].id == name
    # a query image that is not in the store finds its nearest colour
    orange = tmp_path / "dark-red.png"
    from conftest import make_png

    make_png(orange, (225, 25, 25))
    assert db.similarity_search_by_image(uri=str(orange), k=1)[0].metadata["colour"] == "red"
    # and the stored base64 documents can be reranked by their pixels
    top = MMEmbedRerank(reranker=ToyReranker(), top_n=1).compress_documents(
        db.similarity_search_by_image(uri=str(images["green"]), k=4), {"image": str(images["green"])})
    assert top[0].metadata["colour"] == "green" and "relevance_score" in top[0].metadata


def test_chroma_bad_images_are_refused_and_store_unchanged(tmp_path: Path, toy_encoder: ToyEncoder,
                                                           images: dict[str, Path]) -> None:
    db = _chroma(tmp_path, MMEmbedEmbeddings(encoder=toy_encoder))
    db.add_images(uris=[str(images["red"])], metadatas=[{"colour": "red"}])
    before = db.get()["ids"]
    with pytest.raises(FileNotFoundError):  # langchain_chroma reads the file itself first
        db.add_images(uris=[str(images["blue"]), str(tmp_path / "missing.png")])
    bad = corrupt_image(tmp_path / "broken.png")
    with pytest.raises(ImageLoadError, match=r"document #1.*broken.png"):
        db.add_images(uris=[str(images["blue"]), str(bad)], metadatas=[{"colour": "blue"}, {"colour": "?"}])
    with pytest.raises(ImageLoadError, match="broken.png"):
        db.similarity_search_by_image(uri=str(bad))
    with pytest.raises(ImageLoadError, match="lost.png"):
        add_interleaved_documents(db, [Document("fine"), Document("lost", metadata={"image": str(tmp_path / "lost.png")})])
    with pytest.raises(ValueError, match="empty"):
        db.similarity_search("")
    assert db.get()["ids"] == before


def test_chroma_interleaved_and_text_documents(tmp_path: Path, toy_encoder: ToyEncoder,
                                               images: dict[str, Path]) -> None:
    emb = MMEmbedEmbeddings(encoder=toy_encoder, task="text->text")
    db = _chroma(tmp_path, emb)
    docs = [Document(caption, metadata={"image": str(images[n]), "colour": n}, id=n) for n, (_, caption) in COLOURS.items()]
    docs.append(Document("two pictures", metadata={"image": [str(images["red"]), str(images["blue"])]}, id="pair"))
    ids = add_interleaved_documents(db, docs)
    assert ids == [d.id for d in docs]
    db.add_documents([Document("bananas are rich in potassium", metadata={"kind": "fact"}, id="fact")])
    got = db.get(ids=["red", "pair"], include=["embeddings", "metadatas", "documents"])
    red = got["ids"].index("red")
    assert got["documents"][red] == "a red apple"
    assert got["metadatas"][red] == {"image": str(images["red"]), "colour": "red"}
    assert np.allclose(got["embeddings"][red],
                       toy_encoder.encode_documents([{"image": images["red"], "text": "a red apple"}])[0], atol=1e-6)
    assert got["metadatas"][got["ids"].index("pair")]["image"] == [str(images["red"]), str(images["blue"])]
    # text queries go through embed_query (with the instruction) and find text and interleaved records
    assert db.similarity_search("potassium in bananas", k=1)[0].id == "fact"
    # an image query finds the interleaved document with that image
    assert db.similarity_search_by_image(uri=str(images["yellow"]), k=1)[0].id == "yellow"


def test_chroma_with_the_default_model(tmp_path: Path, images: dict[str, Path]) -> None:
    emb = MMEmbedEmbeddings(model="default", device="cpu", task="text->text")
    db = _chroma(tmp_path, emb)
    names = list(COLOURS)
    db.add_images(uris=[str(images[n]) for n in names], metadatas=[{"colour": n} for n in names], ids=names)
    for name in names:
        assert db.similarity_search_by_image(uri=str(images[name]), k=1)[0].id == name
    db.add_texts(["bananas are rich in potassium", "the Eiffel tower is in Paris"], ids=["fact1", "fact2"])
    assert db.similarity_search("Which French city has the Eiffel tower?", k=1)[0].id == "fact2"


async def test_default_model_and_default_reranker(tmp_path: Path, images: dict[str, Path]) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever

    docs = [Document(c, metadata={"image": str(images[n])}, id=n) for n, (_, c) in COLOURS.items()]
    docs.append(Document("Bananas are rich in potassium and taste sweet.", id="fact"))
    r = MMEmbedRetriever(path=str(tmp_path / "db"), model="default", device="cpu", k=2, fetch_k=6,
                         reranker="default", task="text->image+text")
    r.add_documents(docs)
    got = r.invoke("a yellow banana")
    assert got[0].id == "yellow" and len(got) == 2
    assert all("relevance_score" in d.metadata and "score" in d.metadata for d in got)
    assert r._get_reranker() is r._get_reranker()  # loaded once
    compressed = ContextualCompressionRetriever(
        base_compressor=MMEmbedRerank(model="default", encoder=r.get_store().encoder, top_n=2),
        base_retriever=r.model_copy(update={"k": 6, "reranker": None}),
    )
    out = await compressed.ainvoke("Which fruit contains potassium?")
    assert "fact" in [d.id for d in out] and len(out) == 2
    rel = [d.metadata["relevance_score"] for d in out]
    assert rel == sorted(rel, reverse=True)


# ---- retriever in LCEL chains --------------------------------------------------------------------------
def format_docs(docs: list[Document]) -> str:
    lines = []
    for d in docs:
        image = d.metadata.get("image")
        lines.append(f"- {d.page_content}" + (f" [image: {image}]" if image else ""))
    return "\n".join(lines)


PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer from the context only.\nContext:\n{context}"),
    ("human", "{question}"),
])


@pytest.fixture
def retriever(tmp_path: Path, toy_encoder: ToyEncoder, images: dict[str, Path]) -> MMEmbedRetriever:
    r = MMEmbedRetriever(path=str(tmp_path / "db"), encoder=toy_encoder, k=2, task="text->image+text")
    r.add_documents([Document(c, metadata={"image": str(images[n])}, id=n) for n, (_, c) in COLOURS.items()])
    return r


async def test_lcel_chain_retriever_format_docs_prompt(retriever: MMEmbedRetriever, images: dict[str, Path]) -> None:
    context_chain = retriever | RunnableLambda(format_docs)
    assert "a yellow banana" in context_chain.invoke("a yellow banana")
    chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | PROMPT
    value = chain.invoke("a yellow banana")
    system, human = value.to_messages()
    assert human.content == "a yellow banana"
    expected = retriever.invoke("a yellow banana")
    assert system.content.endswith(format_docs(expected))
    assert f"a yellow banana [image: {images['yellow']}]" in system.content
    assert system.content.count("\n- ") == 2  # k=2 documents
    # async and batch go through the same path
    avalue = await chain.ainvoke("a yellow banana")
    assert avalue.to_messages() == value.to_messages()
    batch = chain.batch(["the blue sea", "a black cat at night"])
    assert "the blue sea" in batch[0].to_messages()[0].content
    assert "a black cat at night" in batch[1].to_messages()[0].content


async def test_contextual_compression_retriever_with_mmembed_rerank(retriever: MMEmbedRetriever) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever

    reranker = ToyReranker()
    compressed = ContextualCompressionRetriever(
        base_compressor=MMEmbedRerank(reranker=reranker, top_n=2),
        base_retriever=retriever.model_copy(update={"k": 5}),
    )
    docs = compressed.invoke("a green leaf")
    assert [d.id for d in docs][0] == "green" and len(docs) == 2
    scores = [d.metadata["relevance_score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert len(reranker.seen[-1][1]) == 5  # the reranker read all five retrieved documents
    adocs = await compressed.ainvoke("a green leaf")
    assert [(d.id, d.metadata["relevance_score"]) for d in adocs] == [(d.id, s) for d, s in zip(docs, scores)]
    chain = {"context": compressed | format_docs, "question": RunnablePassthrough()} | PROMPT
    assert "- a green leaf" in chain.invoke("a green leaf").to_messages()[0].content


# ---- a Chroma server by URL ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    assert exe is not None, "the `chroma` command (installed with chromadb, a core dependency) is not on PATH"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen([exe, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("chroma server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_retriever_over_a_chroma_server(chroma_server: str, toy_encoder: ToyEncoder, images: dict[str, Path],
                                        tmp_path: Path) -> None:
    remote = MMEmbedRetriever(url=chroma_server, encoder=toy_encoder, collection="remote-test", k=2)
    docs = [Document(c, metadata={"image": str(images[n])}, id=n) for n, (_, c) in COLOURS.items()]
    assert len(remote.add_documents(docs).added) == len(docs)
    local = MMEmbedRetriever(path=str(tmp_path / "db"), encoder=toy_encoder, k=2)
    local.add_documents(docs)
    for query in ("a black cat at night", {"image": str(images["blue"])}):
        got = remote.invoke(query)  # type: ignore[arg-type]
        want = local.invoke(query)  # type: ignore[arg-type]
        assert [d.id for d in got] == [d.id for d in want]
        assert [d.metadata["score"] for d in got] == pytest.approx([d.metadata["score"] for d in want], abs=1e-5)
    # a fresh retriever on the same server sees the same collection
    again = MMEmbedRetriever(url=chroma_server, encoder=toy_encoder, collection="remote-test")
    assert again.get_store().count() == len(docs)
