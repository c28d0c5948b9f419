"""mmembed for LlamaIndex: ``MMEmbedRerank``, a node postprocessor that reranks text and image nodes."""

from llama_index.postprocessor.mmembed_rerank.base import MMEmbedRerank

__all__ = ["MMEmbedRerank"]
