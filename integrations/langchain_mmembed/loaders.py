"""``MMEmbedLoader``: PDFs, HTML, Markdown, SVG and images as LangChain Documents (thin: calls
:func:`mmembed.load_documents`).

Each chunk becomes a ``Document`` with its text as ``page_content``, its image location(s) in
``metadata["image"]`` (what :class:`MMEmbedRetriever`, :func:`add_interleaved_documents` and
:class:`MMEmbedEmbeddings` read), its provenance (``source``, ``page`` or ``heading``, ``chunk``...) in the rest
of the metadata, and its stable content-hash id as ``id``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

from mmembed.documents import DocumentChunk, LoadOptions, LoadReport, load_documents

from .documents import IMAGE_KEY


def chunk_to_document(chunk: DocumentChunk) -> Document:
    metadata = {k: v for k, v in chunk.metadata.items() if k != "images"}
    images = chunk.images
    if images:
        metadata[IMAGE_KEY] = images[0] if len(images) == 1 else images
    return Document(page_content=chunk.text, metadata=metadata, id=chunk.id or None)


class MMEmbedLoader(BaseLoader):
    """Load files or folders as interleaved image-text Documents.

    Args:
        path: a file, a folder (mixed formats, recursive), or a list of them.
        assets_dir: where rendered PDF pages and SVGs are written (default: the mmembed cache).
        on_error: ``"raise"`` stops at the first unreadable file; ``"skip"`` records it in ``self.report``.
        **options: :class:`mmembed.documents.LoadOptions` fields (``dpi``, ``granularity``, ``ocr``,
            ``max_pages``, ``max_tokens``...).

    Example:
        .. code-block:: python

            from langchain_mmembed import MMEmbedLoader, MMEmbedRetriever

            docs = MMEmbedLoader("manuals/", assets_dir="assets").load()
            MMEmbedRetriever(path="mmembed_db").add_documents(docs)
    """

    def __init__(self, path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                 assets_dir: str | os.PathLike[str] | None = None, recursive: bool = True,
                 on_error: Literal["raise", "skip"] = "raise", **options: Any) -> None:
        self.path = path
        self.assets_dir = assets_dir
        self.recursive = recursive
        self.on_error = on_error
        self.options = LoadOptions(**options)
        self.report = LoadReport()

    def lazy_load(self) -> Iterator[Document]:
        for chunk in load_documents(self.path, assets_dir=self.assets_dir, options=self.options,
                                    recursive=self.recursive, on_error=self.on_error, report=self.report):
            yield chunk_to_document(chunk)


__all__ = ["MMEmbedLoader", "chunk_to_document"]
