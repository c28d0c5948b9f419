"""mmembed for LlamaIndex: ``MMEmbedReader`` (PDFs, HTML, Markdown, SVG, images -> documents with provenance)."""

from llama_index.readers.mmembed.base import MMEmbedReader

__all__ = ["MMEmbedReader"]
