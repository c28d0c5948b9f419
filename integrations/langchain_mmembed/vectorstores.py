"""Writing interleaved (image + text) Documents into a ``langchain_chroma.Chroma`` vector store.

Kept apart from :mod:`langchain_mmembed.documents` (pure type conversions, imported by the embeddings) so the
two modules do not import each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document

from mmembed.errors import InputError
from mmembed.metadata import sanitize_metadata

from .embeddings import MMEmbedEmbeddings


def add_interleaved_documents(vectorstore: Any, documents: Sequence[Document], *,
                              ids: Sequence[str] | None = None) -> list[str]:
    """Add Documents with images to a ``langchain_chroma.Chroma`` whose embedding is ``MMEmbedEmbeddings``.

    ``Chroma.add_documents`` cannot do it: it hands only ``page_content`` strings to the embedding. This embeds
    each document as *its images (``metadata["image"]``), then its text* and writes the same record
    ``add_documents`` would (``page_content`` as the document, metadata as given, ``image`` kept as the
    location). Every image is decoded before anything is written, so a bad one leaves the store unchanged.
    Returns the ids (``Document.id``, else ``ids``, else new UUIDs, as Chroma does).
    """
    embeddings = getattr(vectorstore, "embeddings", None)
    if not isinstance(embeddings, MMEmbedEmbeddings):
        raise InputError(
            "add_interleaved_documents needs a vector store built with MMEmbedEmbeddings as its embedding "
            f"function, got {type(embeddings).__name__}"
        )
    collection = getattr(vectorstore, "_collection", None)
    if collection is None or not hasattr(collection, "upsert"):
        raise InputError(f"add_interleaved_documents supports langchain_chroma.Chroma, got {type(vectorstore).__name__}")
    documents = list(documents)
    if ids is not None and len(ids) != len(documents):
        raise InputError(f"got {len(ids)} ids for {len(documents)} documents")
    out_ids = [
        (ids[i] if ids is not None and ids[i] is not None else doc.id) or str(uuid.uuid4())
        for i, doc in enumerate(documents)
    ]
    if not documents:
        return []
    metadatas = [sanitize_metadata(doc.metadata or None, where=f"document #{i} metadata")
                 for i, doc in enumerate(documents)]
    vectors = embeddings.embed_langchain_documents(documents)
    collection.upsert(
        ids=out_ids,
        embeddings=vectors,
        documents=[doc.page_content for doc in documents],
        metadatas=metadatas if any(m for m in metadatas) else None,
    )
    return out_ids


__all__ = ["add_interleaved_documents"]
