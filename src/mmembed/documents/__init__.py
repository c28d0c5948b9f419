"""Files -> interleaved documents: PDF pages, HTML/Markdown with figures, SVG and OCR, with provenance.

No framework imports: the store, the CLI (``mmembed index``) and the LangChain/LlamaIndex loaders call this.

    >>> import mmembed
    >>> for chunk in mmembed.load_documents("manuals/", assets_dir="assets"):  # doctest: +SKIP
    ...     print(chunk.metadata["source"], chunk.metadata.get("page"), chunk.text[:40])

Formats (by extension, confirmed by content): PDF (pypdfium2; page image + text layer, OCR when a page has
no text layer), HTML and Markdown (text and images in reading order, split at headings and at a token
budget), SVG (resvg, references and entities refused), images (sidecar captions; OCR with ``ocr=True``).
"""

from .assets import Assets, default_assets_dir
from .chunking import DEFAULT_MAX_TOKENS, chunk_blocks, estimate_tokens
from .loader import FileEntry, LoadOptions, LoadReport, list_files, load_documents, load_file, sniff_format
from .model import Document, DocumentChunk, DocumentError, SkippedFile

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "Assets",
    "Document",
    "DocumentChunk",
    "DocumentError",
    "FileEntry",
    "LoadOptions",
    "LoadReport",
    "SkippedFile",
    "chunk_blocks",
    "default_assets_dir",
    "estimate_tokens",
    "list_files",
    "load_documents",
    "load_file",
    "sniff_format",
]
