"""mmembed for LlamaIndex: ``MMEmbedEmbedding`` (a ``MultiModalEmbedding``)."""

from llama_index.embeddings.mmembed.base import MMEmbedEmbedding

__all__ = ["MMEmbedEmbedding"]
