"""``MMEmbedRerank``: mmembed rerankers as a LangChain document compressor."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field, field_validator

from mmembed.encoders.base import Encoder
from mmembed.errors import InputError, describe
from mmembed.instructions import get_task
from mmembed.pipeline import as_reranker, rerank
from mmembed.rerankers.base import Reranker

from .documents import document_to_input, query_to_input
from .embeddings import MMEmbedEmbeddings


class MMEmbedRerank(BaseDocumentCompressor):
    """Rerank Documents against a query with an mmembed reranker, images included.

    Each Document is scored as *its images (``metadata["image"]``), then its text* against the query (text,
    or an image/interleaved query as for :class:`MMEmbedRetriever`) under the task instruction. Returns the
    ``top_n`` best, best first, as copies with ``metadata["relevance_score"]`` set. A Document that cannot be
    read (a missing or corrupt image) raises an error naming it; with ``on_error="skip"`` it is left out and
    reported in a :class:`mmembed.pipeline.SkippedCandidatesWarning` -- the rule of
    :func:`mmembed.pipeline.rerank`, shared with the LlamaIndex ``MMEmbedRerank`` and both retrievers.

    Parameters match the LlamaIndex ``MMEmbedRerank``: ``model`` (a reranker name or directory), ``reranker``
    (a loaded one), ``encoder``, ``top_n`` (default 3), ``task``/``instruction``, ``on_error``, ``batch_size``,
    ``device``/``dtype``, ``model_kwargs``. The old ``reranker="<name>"`` still works, with a
    DeprecationWarning.

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

    model: str = Field(default="default", description="Reranker registry name or local model directory.")
    reranker: Reranker | None = Field(default=None, description="An already loaded Reranker; wins over `model`.")
    encoder: Encoder | str | None = Field(
        default=None, exclude=True,
        description="First-stage encoder (instance, name, or an MMEmbedEmbeddings) for rerankers that re-embed, "
        "like the default one; give the retriever's encoder so scores are in the same space. None: the "
        "reranker's own default.",
    )
    top_n: int | None = Field(default=3, ge=1, description="How many documents to return (None: all, reordered).")
    task: str | None = Field(default=None, description="Task instruction, by name (see `mmembed tasks`).")
    instruction: str | None = Field(default=None, description="Free-text instruction (wins over `task`).")
    on_error: Literal["raise", "skip"] = Field(
        default="raise", description="A document that cannot be read: 'raise', or 'skip' (left out, reported)."
    )
    batch_size: int = Field(default=16, ge=1, description="Pairs scored per forward pass.")
    device: str | None = Field(default=None, description="Torch device ('cpu', 'cuda', ...); None picks one.")
    dtype: str | None = Field(default=None, description="Model dtype ('float32', 'bfloat16', ...); None picks one.")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra options for mmembed.load_reranker.")

    def __init__(self, **data: Any) -> None:
        if isinstance(data.get("reranker"), (str, os.PathLike)):  # the old way to name a reranker
            name = os.fspath(data.pop("reranker"))
            warnings.warn("MMEmbedRerank(reranker=<name>) is deprecated: pass the name as model=<name> "
                          "(reranker= takes a loaded mmembed Reranker)", DeprecationWarning, stacklevel=2)
            if data.get("model") not in (None, name):
                raise InputError(f"MMEmbedRerank: got model={data['model']!r} and reranker={name!r}; give model only")
            data["model"] = name
        if isinstance(data.get("encoder"), MMEmbedEmbeddings):
            data["encoder"] = data["encoder"].client
        super().__init__(**data)

    @field_validator("model", mode="before")
    @classmethod
    def _model_name(cls, value: Any) -> Any:
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"model must be a reranker name or a model directory, got {describe(value)}")
        return value

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str | None) -> str | None:
        if value is not None:
            get_task(value)
        return value

    @property
    def client(self) -> Reranker:
        """The mmembed Reranker (loaded on first use and shared by every user of the same model, through
        :func:`mmembed.pipeline.as_reranker`)."""
        if self.reranker is not None:
            return self.reranker
        return as_reranker(self.model, encoder=self.encoder, device=self.device, dtype=self.dtype,
                           **self.model_kwargs)  # type: ignore[return-value]

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: Any,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        documents = list(documents)
        if not documents:
            return []
        ranked = rerank(self.client, query_to_input(query), documents, top_n=self.top_n, task=self.task,
                        instruction=self.instruction, batch_size=self.batch_size, on_error=self.on_error,
                        ids=[d.id or f"#{i}" for i, d in enumerate(documents)], to_input=document_to_input)
        return [documents[r.index].model_copy(
                    update={"metadata": {**documents[r.index].metadata, "relevance_score": r.score}})
                for r in ranked]

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: Any,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        return await run_in_executor(None, self.compress_documents, documents, query, callbacks)
