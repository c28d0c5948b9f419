"""mmembed for LlamaIndex: ``MMEmbedRetriever`` over an mmembed store (text, image and composed queries)."""

from llama_index.retrievers.mmembed.base import MMEmbedRetriever

__all__ = ["MMEmbedRetriever"]
