"""``MMEmbedReader``: PDFs, HTML, Markdown, SVG and images as LlamaIndex documents (thin: calls
:func:`mmembed.load_documents`).

A chunk with images becomes an ``ImageDocument`` (``image_path`` = its first image, the rest listed in
metadata ``more_images``, JSON), a text-only chunk a ``Document``; ``MultiModalVectorStoreIndex`` indexes
both, and mmembed's own store ingests them through the embedding adapter. Metadata is flat (Chroma's
vector store requires it) and the provenance keys are kept out of the text that is embedded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, List, Literal, Optional

from llama_index.core.bridge.pydantic import Field
from llama_index.core.readers.base import BasePydanticReader
from llama_index.core.schema import Document, ImageDocument

from mmembed.documents import DocumentChunk, LoadOptions, LoadReport, load_documents

#: Metadata shown to an LLM but not embedded (the embedded text is the chunk's own text).
_NOT_EMBEDDED = ["source", "format", "doc_sha256", "chunk", "chunks", "page", "pages", "heading", "title",
                 "text_from", "dpi", "block", "page_image", "more_images"]
_NOT_FOR_LLM = ["doc_sha256", "chunk", "chunks", "dpi", "block", "page_image", "more_images", "text_from"]


def chunk_to_document(chunk: DocumentChunk) -> Document:
    metadata: dict[str, Any] = {k: v for k, v in chunk.metadata.items()
                                if k != "images" and isinstance(v, (str, int, float))}
    images = chunk.images
    node_id = chunk.id or hashlib.sha256(f"{metadata.get('source')}\0{chunk.text}".encode()).hexdigest()
    common = dict(text=chunk.text, metadata=metadata, id_=node_id,
                  excluded_embed_metadata_keys=[k for k in metadata if k in _NOT_EMBEDDED],
                  excluded_llm_metadata_keys=[k for k in metadata if k in _NOT_FOR_LLM])
    if images:
        if len(images) > 1:
            metadata["more_images"] = json.dumps(images[1:])
            common["excluded_embed_metadata_keys"].append("more_images")
            common["excluded_llm_metadata_keys"].append("more_images")
        return ImageDocument(image_path=images[0], **common)
    return Document(**common)


class MMEmbedReader(BasePydanticReader):
    """Read files or folders into interleaved image-text documents with provenance metadata.

    Example:
        .. code-block:: python

            from llama_index.readers.mmembed import MMEmbedReader

            docs = MMEmbedReader(assets_dir="assets").load_data("manuals/")
    """

    is_remote: bool = False
    assets_dir: Optional[str] = Field(default=None, description="Where rendered PDF pages and SVGs are written "
                                      "(default: the mmembed cache).")
    recursive: bool = Field(default=True, description="Read folders recursively.")
    on_error: Literal["raise", "skip"] = Field(default="raise", description="'skip' leaves out unreadable files "
                                               "(listed in `report`).")
    dpi: float = Field(default=100.0, description="PDF page render resolution.")
    granularity: Literal["page", "block"] = Field(default="page", description="PDF records: page or text block.")
    ocr: bool = Field(default=False, description="OCR standalone images too (PDF pages without text always are).")
    max_pages: int = Field(default=2000, description="PDFs with more pages are refused.")
    max_tokens: int = Field(default=256, description="Text budget of a chunk (tokens).")
    report: Any = Field(default_factory=LoadReport, exclude=True, description="What was read and skipped.")

    @classmethod
    def class_name(cls) -> str:
        return "MMEmbedReader"

    def lazy_load_data(self, file_path: str | Path | List[str | Path], **kwargs: Any) -> Iterable[Document]:
        options = LoadOptions(dpi=self.dpi, granularity=self.granularity, ocr=self.ocr, max_pages=self.max_pages,
                              max_tokens=self.max_tokens)
        for chunk in load_documents(file_path, assets_dir=self.assets_dir, options=options, recursive=self.recursive,
                                    on_error=self.on_error, report=self.report):
            yield chunk_to_document(chunk)

    def load_data(self, file_path: str | Path | List[str | Path], **kwargs: Any) -> List[Document]:
        return list(self.lazy_load_data(file_path, **kwargs))


__all__ = ["MMEmbedReader", "chunk_to_document"]
