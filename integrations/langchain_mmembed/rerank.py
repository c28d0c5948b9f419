"""``MMEmbedRerank``: mmembed rerankers as a LangChain document compressor."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field, field_validator

from mmembed.encoders.base import Encoder
from mmembed.instructions import get_task
from mmembed.rerankers.base import Reranker

from ._loading import get_reranker
from .documents import document_to_input, query_to_input


class MMEmbedRerank(BaseDocumentCompressor):
    """Rerank Documents against a query with an mmembed reranker, images included.

    Each Document is scored as *its images (``metadata["image"]``), then its text* against the query (text,
    or an image/interleaved query as for :class:`MMEmbedRetriever`) under the task instruction. Returns the
    ``top_n`` best, best first, as copies with ``metadata["relevance_score"]`` set. A Document whose image
    cannot be read raises an error naming it; with ``on_error="skip"`` it is left out with a warning instead.

    Example:
        .. code-block:: python

            from langchain_classic.retrievers import ContextualCompressionRetriever
            from langchain_mmembed import MMEmbedRerank, MMEmbedRetriever

            retriever = ContextualCompressionRetriever(
                base_compressor=MMEmbedRerank(top_n=3, task="text->image"),
                base_retriever=MMEmbedRetriever(path="mmembed_db", k=20),
            )
            retriever.invoke("a red fire truck")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    reranker: Reranker | str = Field(
        default="default", description="A Reranker, or a name/path for mmembed.load_reranker."
    )
    encoder: Encoder | str | None = Field(
        default=None, exclude=True,
        description="First-stage encoder (instance or name) for rerankers that re-embed, like the default one; "
        "give the retriever's encoder so scores are in the same space. None: the reranker's own default.",
    )
    top_n: int | None = Field(default=3, ge=1, description="How many documents to return (None: all, reordered).")
    task: str | None = Field(default=None, description="Task instruction, by name (see `mmembed tasks`).")
    instruction: str | None = Field(default=None, description="Free-text instruction (wins over `task`).")
    on_error: Literal["raise", "skip"] = Field(
        default="raise", description="A document that cannot be read: 'raise', or 'skip' (drop it, warn)."
    )
    batch_size: int = Field(default=16, ge=1, description="Pairs scored per forward pass.")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str | None) -> str | None:
        if value is not None:
            get_task(value)
        return value

    @property
    def client(self) -> Reranker:
        """The mmembed Reranker (loaded on first use and shared by instances naming the same model)."""
        if isinstance(self.reranker, Reranker):
            return self.reranker
        return get_reranker(self.reranker, **({"encoder": self.encoder} if self.encoder is not None else {}))

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: Any,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        documents = list(documents)
        if not documents:
            return []
        ranked = self.client.rerank(
            query_to_input(query),
            [document_to_input(d) for d in documents],
            top_n=None,
            task=self.task,
            instruction=self.instruction,
            batch_size=self.batch_size,
            on_error=self.on_error,
            ids=[d.id or f"#{i}" for i, d in enumerate(documents)],
        )
        out: list[Document] = []
        for r in ranked:
            if math.isinf(r.score) and r.score < 0:  # unreadable, skipped by on_error="skip"
                continue
            doc = documents[r.index]
            out.append(doc.model_copy(update={"metadata": {**doc.metadata, "relevance_score": float(r.score)}}))
            if self.top_n is not None and len(out) == self.top_n:
                break
        return out

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: Any,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        return await run_in_executor(None, self.compress_documents, documents, query, callbacks)
