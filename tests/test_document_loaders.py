"""The framework loaders, end to end: files -> LangChain Documents / LlamaIndex documents -> Chroma -> back,
with their images and provenance intact."""

from __future__ import annotations

import json
from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

from conftest import ToyEncoder
from documents_support import SVG_OK, make_pdf, text_image


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    make_pdf(root / "manual.pdf", ["Volcanoes erupt molten rock.", "Glaciers carve deep valleys."])
    text_image(root / "diagram.png", ["d"], size=(80, 60))
    (root / "diagram.txt").write_text("a labelled diagram")
    (root / "guide.md").write_text("# Penguins\n\nPenguins need cold water.\n\n## Feeding\n\nKrill every morning.\n\n"
                                   "![feeding chart](diagram.png)\n")
    (root / "icon.svg").write_text(SVG_OK)
    make_pdf(root / "locked.pdf", ["secret"], password="pw")
    return root


def test_langchain_loader_into_chroma_and_back(folder: Path, tmp_path: Path) -> None:
    from langchain_chroma import Chroma
    from langchain_core.documents import Document

    from langchain_mmembed import MMEmbedEmbeddings, MMEmbedLoader, MMEmbedRetriever, add_interleaved_documents

    loader = MMEmbedLoader(folder, assets_dir=tmp_path / "assets", dpi=30, on_error="skip")
    lazy = loader.lazy_load()
    first = next(lazy)
    assert isinstance(first, Document)
    docs = [first, *lazy]
    assert [Path(s.path).name for s in loader.report.skipped] == ["locked.pdf"]
    by_src = {(d.metadata["source"], d.metadata.get("page"), d.metadata.get("heading")): d for d in docs}
    page2 = by_src[("manual.pdf", 2, None)]
    assert page2.page_content == "Glaciers carve deep valleys." and page2.id
    assert Path(page2.metadata["image"]).is_relative_to(tmp_path / "assets")
    feeding = by_src[("guide.md", None, "Penguins > Feeding")]
    assert feeding.metadata["image"] == str((folder / "diagram.png").resolve())
    assert "feeding chart" in feeding.page_content

    # langchain_chroma.Chroma, written with the images, searched, read back
    embeddings = MMEmbedEmbeddings(encoder=ToyEncoder())
    db = Chroma("documents", embedding_function=embeddings, persist_directory=str(tmp_path / "chroma"))
    ids = add_interleaved_documents(db, docs)
    assert ids == [d.id or ids[i] for i, d in enumerate(docs)]
    hits = db.similarity_search("Krill every morning feeding chart", k=len(docs))
    [hit] = [h for h in hits if h.metadata.get("heading") == "Penguins > Feeding"]
    assert hit.id == feeding.id and hit.metadata["image"] == feeding.metadata["image"]
    assert hit.page_content == feeding.page_content

    # the mmembed retriever over mmembed's own store
    retriever = MMEmbedRetriever(path=str(tmp_path / "mmembed_db"), encoder=ToyEncoder(), k=1)
    added = retriever.add_documents(docs)
    assert len(added.added) == len(docs)
    # (the toy encoder's page vectors are dominated by the white page image: filter to the PDF's pages)
    [got] = retriever.invoke("Volcanoes erupt molten rock", where={"source": "manual.pdf"})
    assert got.metadata["source"] == "manual.pdf" and got.metadata["page"] == 1
    assert got.metadata["image"].endswith(".png") and Path(got.metadata["image"]).is_file()
    # loading again gives the same ids: re-adding writes nothing new
    again = MMEmbedLoader(folder, assets_dir=tmp_path / "assets", dpi=30, on_error="skip").load()
    assert len(retriever.add_documents(again).added) == 0


def test_llamaindex_reader_into_chroma_and_back(folder: Path, tmp_path: Path) -> None:
    from llama_index.core import StorageContext
    from llama_index.core.indices import MultiModalVectorStoreIndex
    from llama_index.core.schema import Document, ImageDocument, ImageNode, MetadataMode
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from llama_index.embeddings.mmembed import MMEmbedEmbedding
    from llama_index.readers.mmembed import MMEmbedReader

    reader = MMEmbedReader(assets_dir=str(tmp_path / "assets"), dpi=30, on_error="skip")
    docs = reader.load_data(folder)
    assert [Path(s.path).name for s in reader.report.skipped] == ["locked.pdf"]
    assert all(isinstance(d, Document) for d in docs)
    pages = [d for d in docs if d.metadata.get("format") == "pdf"]
    assert all(isinstance(d, ImageDocument) and Path(d.image_path).is_file() for d in pages)
    assert [d.metadata["page"] for d in pages] == [1, 2]
    # provenance stays out of the embedded text
    assert pages[1].get_content(MetadataMode.EMBED) == "Glaciers carve deep valleys."
    text_only = [d for d in docs if not isinstance(d, ImageDocument)]
    assert text_only and text_only[0].metadata["heading"] == "Penguins"

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    meta = {"hnsw:space": "cosine"}
    text_store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("text", metadata=meta))
    image_store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("images", metadata=meta))
    ctx = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
    embed = MMEmbedEmbedding(encoder=ToyEncoder())
    index = MultiModalVectorStoreIndex.from_documents(docs, storage_context=ctx, embed_model=embed,
                                                      image_embed_model=embed)
    assert client.get_collection("images").count() == len([d for d in docs if isinstance(d, ImageDocument)])
    retriever = index.as_retriever(similarity_top_k=1, image_similarity_top_k=1)
    hits = retriever.retrieve("Penguins need cold water")
    text_hits = [h for h in hits if not isinstance(h.node, ImageNode)]
    assert text_hits and text_hits[0].node.metadata["heading"] == "Penguins"
    image_hits = [h for h in hits if isinstance(h.node, ImageNode)]
    assert image_hits and Path(image_hits[0].node.image_path).is_file()
    assert "source" in image_hits[0].node.metadata

    # mmembed's store ingests them through the embedding adapter's conversion
    from llama_index.embeddings.mmembed.convert import node_input

    from mmembed import Store

    store = Store(tmp_path / "mmembed_db", encoder=ToyEncoder())
    res = store.add([node_input(d) for d in docs], ids=[d.id_ for d in docs],
                    metadatas=[d.metadata for d in docs])
    assert len(res.added) == len(docs)
    [hit] = store.query("Glaciers carve deep valleys", k=1, where={"format": "pdf"})
    assert hit.metadata["page"] == 2 and hit.uris == [pages[1].image_path]
    assert json.loads(json.dumps(hit.metadata))  # flat, JSON-safe metadata
