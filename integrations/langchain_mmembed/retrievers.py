"""``MMEmbedRetriever``: an mmembed store (Chroma) as a LangChain retriever."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from langchain_core.utils import from_env
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from mmembed.encoders.base import Encoder
from mmembed.errors import InputError
from mmembed.instructions import get_task
from mmembed.pipeline import as_encoder, as_reranker, retrieve
from mmembed.rerankers.base import Reranker
from mmembed.store import DEFAULT_COLLECTION, AddResult, Store

from .documents import hit_to_document, query_to_input, store_items


class MMEmbedRetriever(BaseRetriever):
    """Retrieve text, image and image+text documents from an mmembed store, optionally reranked.

    The store is a Chroma collection written by ``mmembed index``, :class:`mmembed.Store` or
    :meth:`add_documents`: a directory (``path``), a Chroma server (``url``), or a ready ``store``. Each result
    is a ``Document`` with the stored text as ``page_content``, the record id as ``id``, and metadata holding
    the stored metadata, ``image`` (the image location, or a list of them), ``score`` (cosine similarity),
    ``modality`` and, when reranked, ``relevance_score``.

    The query is a string, or an image / image+text query as ``{"image": "cat.png", "text": "..."}``, a list of
    parts, a ``pathlib.Path``, a PIL image, or a chat message with image content blocks.
    ``invoke(query, k=..., fetch_k=..., task=..., instruction=..., where=...)`` overrides the fields per call.

    Example:
        .. code-block:: python

            from langchain_mmembed import MMEmbedRetriever

            retriever = MMEmbedRetriever(path="mmembed_db", task="text->image", k=4)
            docs = retriever.invoke("a red fire truck")
            docs = retriever.invoke({"image": "truck.png"}, task="image->image", k=2)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    store: Store | None = Field(default=None, exclude=True, description="A ready mmembed Store (wins over path/url).")
    path: str | None = Field(default=None, description="Directory of the embedded Chroma database.")
    url: str | None = Field(default=None, description="Chroma server URL (http://host:port), instead of `path`.")
    collection: str = Field(default=DEFAULT_COLLECTION, description="Collection name.")
    model: str = Field(
        default_factory=from_env("MMEMBED_MODEL", default="default"),
        description="Encoder name or model directory (must be the one the collection was built with).",
    )
    encoder: Encoder | None = Field(default=None, exclude=True, description="An already loaded Encoder.")
    device: str | None = Field(
        default_factory=from_env("MMEMBED_DEVICE", default=None),
        description="'cpu', 'cuda', 'mps'...; None picks one. Env MMEMBED_DEVICE.",
    )
    dtype: str | None = Field(default=None, description="'float32', 'float16', 'bfloat16'; None picks per device.")
    k: int = Field(default=4, ge=1, description="Number of documents to return.")
    fetch_k: int | None = Field(
        default=None, ge=1, description="Candidates fetched for the reranker (default: max(3*k, 20))."
    )
    task: str | None = Field(default=None, description="Task instruction for queries, by name (`mmembed tasks`).")
    instruction: str | None = Field(default=None, description="Free-text query instruction (wins over `task`).")
    reranker: Reranker | str | None = Field(
        default=None, description="A Reranker, or a name for mmembed.load_reranker (e.g. 'default'); None: no rerank."
    )
    on_error: Literal["raise", "skip"] = Field(
        default="raise",
        description="A candidate the reranker cannot read: 'raise', or 'skip' (left out and reported, as by "
        "mmembed.pipeline.rerank).",
    )
    where: dict[str, Any] | None = Field(default=None, description="Chroma metadata filter applied to every query.")

    _store: Store | None = PrivateAttr(default=None)

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str | None) -> str | None:
        if value is not None:
            get_task(value)
        return value

    @field_validator("path", mode="before")
    @classmethod
    def _path_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="after")
    def _one_location(self) -> "MMEmbedRetriever":
        if self.path is not None and self.url is not None:
            raise InputError("give either path (a local database) or url (a Chroma server), not both")
        return self

    # ---- the store ----------------------------------------------------------------------------------------
    def get_store(self) -> Store:
        """The mmembed Store this retriever reads (opened on first use)."""
        if self.store is not None:
            return self.store
        if self._store is None:
            encoder = self.encoder if self.encoder is not None else as_encoder(self.model, device=self.device,
                                                                               dtype=self.dtype)
            self._store = Store(self.path, url=self.url, encoder=encoder, collection=self.collection)
        return self._store

    def _get_reranker(self) -> Reranker | None:
        """The reranker (a name is loaded once per process with the store's encoder, by the pipeline)."""
        if self.reranker is None or isinstance(self.reranker, Reranker):
            return self.reranker
        return as_reranker(self.reranker, self.get_store(), device=self.device, dtype=self.dtype)

    def add_documents(self, documents: Sequence[Document], *, on_error: Literal["raise", "skip"] = "raise",
                      show_progress: bool | None = None) -> AddResult:
        """Index Documents in the store: each one's images (``metadata["image"]``), then its text.

        Ids are ``Document.id`` when set, else a content hash (adding the same content twice writes one
        record). With ``on_error="raise"`` a bad document stops the call before its chunk is written.
        """
        items, ids, metadatas = store_items(documents)
        # a None id makes the store use the content hash for that record
        return self.get_store().add(items, ids=ids, metadatas=metadatas, on_error=on_error,
                                    show_progress=show_progress)

    # ---- BaseRetriever ----------------------------------------------------------------------------------------
    def _get_relevant_documents(
        self,
        query: Any,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        fetch_k: int | None = None,
        task: str | None = None,
        instruction: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> list[Document]:
        hits = retrieve(
            self.get_store(),
            query_to_input(query),
            k=self.k if k is None else k,
            fetch_k=self.fetch_k if fetch_k is None else fetch_k,
            task=self.task if task is None else task,
            instruction=self.instruction if instruction is None else instruction,
            reranker=self._get_reranker(),
            where=self.where if where is None else where,
            on_error=self.on_error,
        )
        return [hit_to_document(h) for h in hits]

    async def _aget_relevant_documents(
        self,
        query: Any,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        **kwargs: Any,
    ) -> list[Document]:
        return await run_in_executor(
            None, self._get_relevant_documents, query, run_manager=run_manager.get_sync(), **kwargs
        )

