"""``MMEmbedEmbedding``: an mmembed encoder as a LlamaIndex ``MultiModalEmbedding``.

Drop-in where LlamaIndex expects ``ClipEmbedding`` (``MultiModalVectorStoreIndex(embed_model=...,
image_embed_model=...)``), with two things CLIP cannot do: queries carry a task instruction (MM-Embed's
instruction-steered retrieval), and :meth:`MMEmbedEmbedding.get_multimodal_query_embedding` embeds an image
*and* its text together as one query. Texts and images are documents (no instruction), queries get the
instruction, and everything is one vector space so a text query finds images and the other way round.

All the work (coercion, image loading and its safety policy, batching, normalisation) is the engine's
``Encoder``; this class only converts LlamaIndex types. Async methods run the encoder in a worker thread so
they never block the event loop; one lock per instance keeps concurrent batches from oversubscribing the CPU.
"""

from __future__ import annotations

import asyncio
import os
import threading
import warnings
from typing import Any, Dict, List, Optional

from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import ImageType

from mmembed import Encoder, InputError, resolve_instruction
from mmembed._deprecation import renamed
from mmembed.errors import describe
from mmembed.pipeline import as_encoder

from .convert import image_input

DEFAULT_BATCH_SIZE = 32


class MMEmbedEmbedding(MultiModalEmbedding):
    """Text, image and interleaved image+text embeddings from an mmembed encoder.

    Args:
        model: a registry name (``"default"``, ``"mmembed-mini"``, ``"nvidia/MM-Embed"``) or a local model
            directory, for :func:`mmembed.load_encoder` (default: env ``MMEMBED_MODEL``, else ``"default"``).
            Nothing is ever downloaded. Also stored as LlamaIndex's ``model_name``.
        encoder: an already loaded :class:`mmembed.Encoder` (shared with a ``Store`` or another adapter);
            wins over ``model``.
        task: a registered task (``mmembed tasks``) whose instruction steers query embeddings.
        instruction: free-text query instruction; wins over ``task``.
        device, dtype: where and in what precision to run the model (``None``: best available; env
            ``MMEMBED_DEVICE`` sets the device).
        model_kwargs: extra arguments for :func:`mmembed.load_encoder`, e.g. ``{"allow_remote": True}`` to
            let it fetch http(s) images (off by default).
        embed_batch_size: items per encoder call.

    The names match the LangChain ``MMEmbedEmbeddings``. The old ``model_name=``, ``query_instruction=`` and
    ``encoder_kwargs=`` still work, with a DeprecationWarning. Models named here are loaded once per process
    (:func:`mmembed.pipeline.as_encoder`) and shared with the retriever and the LangChain adapters.

    Example:
        >>> embed = MMEmbedEmbedding(task="text->image")
        >>> index = MultiModalVectorStoreIndex.from_documents(docs, embed_model=embed, image_embed_model=embed)
    """

    model: str = Field(
        default="default",
        description="mmembed encoder: a registry name ('default', 'mmembed-mini', 'nvidia/MM-Embed') or a local "
        "model directory.",
    )
    task: Optional[str] = Field(
        default=None, description="Registered task name whose instruction is given to query embeddings."
    )
    instruction: Optional[str] = Field(
        default=None, description="Free-text instruction for query embeddings; wins over `task`."
    )
    device: Optional[str] = Field(default=None, description="Torch device ('cpu', 'cuda', ...); None picks one.")
    dtype: Optional[str] = Field(default=None, description="Model dtype ('float32', 'bfloat16', ...); None picks one.")
    model_kwargs: Dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments for mmembed.load_encoder (e.g. {'allow_remote': True}).",
    )

    _encoder: Encoder = PrivateAttr()
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self,
        model: Optional[str] = None,
        *,
        encoder: Optional[Encoder] = None,
        task: Optional[str] = None,
        instruction: Optional[str] = None,
        device: Optional[str] = None,
        dtype: Optional[str] = None,
        model_kwargs: Optional[Dict[str, Any]] = None,
        embed_batch_size: int = DEFAULT_BATCH_SIZE,
        callback_manager: Optional[CallbackManager] = None,
        **kwargs: Any,
    ) -> None:
        model = renamed(kwargs, "model_name", "model", model, where="MMEmbedEmbedding")
        instruction = renamed(kwargs, "query_instruction", "instruction", instruction, where="MMEmbedEmbedding")
        model_kwargs = renamed(kwargs, "encoder_kwargs", "model_kwargs", model_kwargs, where="MMEmbedEmbedding")
        if encoder is not None and not isinstance(encoder, Encoder):
            raise InputError(f"encoder must be an mmembed.Encoder, got {describe(encoder)}; pass a name or path "
                             "as model instead")
        if model is None:
            model = os.environ.get("MMEMBED_MODEL") or "default"
        if device is None:
            device = os.environ.get("MMEMBED_DEVICE") or None
        name = encoder.name if encoder is not None else os.fspath(model)
        super().__init__(
            model=name,
            model_name=name,
            task=task,
            instruction=instruction,
            device=device,
            dtype=dtype,
            model_kwargs=dict(model_kwargs or {}),
            embed_batch_size=embed_batch_size,
            callback_manager=callback_manager,
            **kwargs,
        )
        resolve_instruction(task, instruction)  # an unknown task fails here, not at the first query
        if encoder is None:
            encoder = as_encoder(model, device=device, dtype=dtype, **self.model_kwargs)
        self._encoder = encoder

    @property
    def query_instruction(self) -> Optional[str]:
        """Deprecated name of :attr:`instruction`."""
        warnings.warn("MMEmbedEmbedding.query_instruction is deprecated: use .instruction", DeprecationWarning,
                      stacklevel=2)
        return self.instruction

    @property
    def encoder_kwargs(self) -> Dict[str, Any]:
        """Deprecated name of :attr:`model_kwargs`."""
        warnings.warn("MMEmbedEmbedding.encoder_kwargs is deprecated: use .model_kwargs", DeprecationWarning,
                      stacklevel=2)
        return self.model_kwargs

    @classmethod
    def class_name(cls) -> str:
        return "MMEmbedEmbedding"

    @property
    def encoder(self) -> Encoder:
        """The mmembed encoder (share it with ``mmembed.Store(encoder=...)`` to index the same space)."""
        return self._encoder

    @property
    def dim(self) -> int:
        return int(self._encoder.dim)

    # ---- the encoder, once --------------------------------------------------------------------------
    def _documents(self, items: List[Any]) -> List[Embedding]:
        with self._lock:
            vecs = self._encoder.encode_documents(items, batch_size=self.embed_batch_size, show_progress=False)
        return vecs.tolist()

    def _queries(self, items: List[Any]) -> List[Embedding]:
        with self._lock:
            vecs = self._encoder.encode_queries(items, task=self.task, instruction=self.instruction,
                                                batch_size=self.embed_batch_size, show_progress=False)
        return vecs.tolist()

    @staticmethod
    def _text(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise InputError(f"{where}: expected text (str), got {describe(value)}; use get_image_embedding for "
                             "images")
        return value

    # ---- queries (with the instruction) -------------------------------------------------------------
    def _get_query_embedding(self, query: str) -> Embedding:
        return self._queries([self._text(query, "query")])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def get_multimodal_query_embedding(self, query_str: Optional[str] = None,
                                       image: Optional[ImageType] = None) -> Embedding:
        """One query vector for an image and its text together (either may be omitted), with the instruction.

        What a composed query (``QueryBundle(query_str, image_path=...)``) means to MM-Embed: "this picture,
        and this about it". Use it as ``QueryBundle.embedding`` or with a vector store query.
        """
        parts: List[Any] = []
        if image is not None:
            parts.append(image_input(image, where="query image"))
        if query_str is not None and self._text(query_str, "query_str").strip():
            parts.append(query_str)
        if not parts:
            raise InputError("multimodal query has no text and no image")
        return self._queries([parts])[0]

    async def aget_multimodal_query_embedding(self, query_str: Optional[str] = None,
                                              image: Optional[ImageType] = None) -> Embedding:
        return await asyncio.to_thread(self.get_multimodal_query_embedding, query_str, image)

    # ---- texts (documents, no instruction) ----------------------------------------------------------
    def _get_text_embedding(self, text: str) -> Embedding:
        return self._documents([self._text(text, "text")])[0]

    def _get_text_embeddings(self, texts: List[str]) -> List[Embedding]:
        return self._documents([self._text(t, f"text #{i}") for i, t in enumerate(texts)])

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: List[str]) -> List[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    # ---- images (documents, no instruction) ---------------------------------------------------------
    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._documents([image_input(img_file_path, where="image")])[0]

    def _get_image_embeddings(self, img_file_paths: List[ImageType]) -> List[Embedding]:
        return self._documents([image_input(p, where=f"image #{i}") for i, p in enumerate(img_file_paths)])

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return await asyncio.to_thread(self._get_image_embedding, img_file_path)

    async def _aget_image_embeddings(self, img_file_paths: List[ImageType]) -> List[Embedding]:
        return await asyncio.to_thread(self._get_image_embeddings, img_file_paths)
