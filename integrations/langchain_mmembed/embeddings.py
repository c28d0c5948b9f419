"""``MMEmbedEmbeddings``: mmembed encoders behind LangChain's ``Embeddings`` interface."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.utils import from_env
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from mmembed.encoders.base import Encoder
from mmembed.errors import InputError
from mmembed.instructions import get_task
from mmembed.pipeline import as_encoder

from .documents import document_to_input, query_to_input


class MMEmbedEmbeddings(BaseModel, Embeddings):
    """Multimodal embeddings from an mmembed encoder (text, images, and image+text together).

    Queries are embedded with the task instruction (``task`` names one of ``mmembed tasks``; ``instruction``
    is free text and wins over ``task``); documents and images never get one, as in MM-Embed.

    Works unchanged with ``langchain_chroma.Chroma``: ``add_texts``/``add_documents`` and ``similarity_search``
    use :meth:`embed_documents`/:meth:`embed_query`; ``add_images`` and ``similarity_search_by_image`` use
    :meth:`embed_image`. Documents with images (``metadata["image"]``) are embedded by
    :meth:`embed_langchain_documents`, which :func:`langchain_mmembed.add_interleaved_documents` uses to write
    them to Chroma.

    Setup:
        ``pip install "mmembed[langchain]"``. Nothing is downloaded: ``model`` is a registered name
        (``default`` is the bundled mmembed-mini) or a local model directory; ``MMEMBED_MODEL`` sets the default.

    Example:
        .. code-block:: python

            from langchain_chroma import Chroma
            from langchain_mmembed import MMEmbedEmbeddings

            emb = MMEmbedEmbeddings(task="text->image")
            db = Chroma("pictures", embedding_function=emb)
            db.add_images(uris=["cat.png", "dog.png"], metadatas=[{"name": "cat"}, {"name": "dog"}])
            db.similarity_search("a sleepy cat", k=1)          # text -> image
            db.similarity_search_by_image("kitten.png", k=1)   # image -> image
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=(), extra="forbid")

    model: str = Field(
        default_factory=from_env("MMEMBED_MODEL", default="default"),
        description="Encoder registry name (e.g. 'default') or local model directory; env MMEMBED_MODEL.",
    )
    encoder: Encoder | None = Field(
        default=None, exclude=True, repr=False,
        description="An already loaded mmembed Encoder; when given, `model`, `device` and `dtype` are not used.",
    )
    device: str | None = Field(
        default_factory=from_env("MMEMBED_DEVICE", default=None),
        description="'cpu', 'cuda', 'mps'...; None picks an accelerator when present. Env MMEMBED_DEVICE.",
    )
    dtype: str | None = Field(default=None, description="'float32', 'float16', 'bfloat16'; None picks per device.")
    task: str | None = Field(default=None, description="Task instruction for queries, by name (see `mmembed tasks`).")
    instruction: str | None = Field(default=None, description="Free-text query instruction (wins over `task`).")
    batch_size: int = Field(default=32, ge=1, description="Inputs per forward pass.")
    show_progress: bool = Field(default=False, description="Show a progress bar while embedding.")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra options for mmembed.load_encoder, e.g. {'allow_remote': True} to fetch http(s) images.",
    )

    _loaded: Encoder | None = PrivateAttr(default=None)

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str | None) -> str | None:
        if value is not None:
            get_task(value)  # raises InputError listing the known tasks
        return value

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: Any) -> str:
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"model must be an encoder name or a model directory, got {value!r}")
        return value

    # ---- the encoder ----------------------------------------------------------------------------------
    @property
    def client(self) -> Encoder:
        """The mmembed Encoder (loaded on first use and shared by every instance with the same settings)."""
        if self.encoder is not None:
            return self.encoder
        if self._loaded is None:
            self._loaded = as_encoder(self.model, device=self.device, dtype=self.dtype, **self.model_kwargs)
        return self._loaded

    def _docs(self, inputs: Sequence[Any]) -> list[list[float]]:
        if not inputs:
            return []
        vectors = self.client.encode_documents(list(inputs), batch_size=self.batch_size,
                                               show_progress=self.show_progress)
        return vectors.tolist()

    def _query(self, query: Any) -> list[float]:
        vectors = self.client.encode_queries([query_to_input(query)], task=self.task, instruction=self.instruction,
                                             batch_size=self.batch_size, show_progress=False)
        return vectors[0].tolist()

    # ---- LangChain Embeddings ---------------------------------------------------------------------------
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts as documents (no instruction). Every item must be a str."""
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(
                    f"embed_documents takes strings; item #{i} is {type(text).__name__}. Use embed_image for "
                    "image paths and embed_interleaved / embed_langchain_documents for images with text."
                )
        return self._docs(texts)

    def embed_query(self, text: str) -> list[float]:
        """Embed a query with the task instruction. A str is text; a dict/list/image is an interleaved query."""
        return self._query(text)

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """Embed images given by path or URI (``langchain_chroma.Chroma.add_images`` and
        ``similarity_search_by_image`` call this). Embedded as documents: no instruction."""
        if isinstance(uris, (str, os.PathLike)):
            uris = [uris]  # type: ignore[list-item]
        return self._docs([{"image": u} for u in uris])

    def embed_interleaved(self, items: Sequence[Any]) -> list[list[float]]:
        """Embed any mmembed inputs as documents: text, images, ``{"image": ..., "text": ...}``, lists of parts."""
        return self._docs(list(items))

    def embed_langchain_documents(self, documents: Sequence[Document]) -> list[list[float]]:
        """Embed Documents as *their images (``metadata["image"]``), then their text*."""
        return self._docs([document_to_input(d) for d in documents])

    # ---- async: the model runs in a worker thread, the event loop stays free -----------------------------
    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await run_in_executor(None, self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await run_in_executor(None, self.embed_query, text)

    async def aembed_image(self, uris: list[str]) -> list[list[float]]:
        return await run_in_executor(None, self.embed_image, uris)

    async def aembed_interleaved(self, items: Sequence[Any]) -> list[list[float]]:
        return await run_in_executor(None, self.embed_interleaved, items)

    async def aembed_langchain_documents(self, documents: Sequence[Document]) -> list[list[float]]:
        return await run_in_executor(None, self.embed_langchain_documents, documents)
