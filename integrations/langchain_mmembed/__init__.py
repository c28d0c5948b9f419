"""LangChain integration for mmembed: multimodal embeddings, retriever and reranker.

* :class:`MMEmbedEmbeddings` -- ``Embeddings`` for text, images (``embed_image``, used by
  ``langchain_chroma.Chroma.add_images`` / ``similarity_search_by_image``) and image+text documents.
* :class:`MMEmbedRetriever` -- a ``BaseRetriever`` over an mmembed store, text or image queries, optional rerank.
* :class:`MMEmbedRerank` -- a ``BaseDocumentCompressor`` for ``ContextualCompressionRetriever``.
* :class:`MMEmbedLoader` -- a ``BaseLoader``: PDFs, HTML, Markdown, SVG and images as Documents.

Documents carry their images as locations in ``metadata["image"]`` (a path/URI, or a list of them).
"""

from langchain_mmembed.documents import IMAGE_KEY, document_to_input, hit_to_document, query_to_input
from langchain_mmembed.embeddings import MMEmbedEmbeddings
from langchain_mmembed.loaders import MMEmbedLoader
from langchain_mmembed.rerank import MMEmbedRerank
from langchain_mmembed.retrievers import MMEmbedRetriever
from langchain_mmembed.vectorstores import add_interleaved_documents

__all__ = [
    "IMAGE_KEY",
    "MMEmbedEmbeddings",
    "MMEmbedLoader",
    "MMEmbedRerank",
    "MMEmbedRetriever",
    "add_interleaved_documents",
    "document_to_input",
    "hit_to_document",
    "query_to_input",
]
