"""mmembed: universal multimodal retrieval for RAG (after MM-Embed, ICLR 2025).

Embed interleaved image-text inputs as queries (steered by a task instruction) or documents, store them in
Chroma, retrieve and rerank. Heavy modules (torch backends, chromadb) load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import (
    EncoderMismatchError,
    ImageLoadError,
    InputError,
    MMEmbedError,
    ModelLoadError,
    RemoteImageError,
    StoreConnectionError,
    StoreNotFoundError,
)
from .images import ImagePolicy
from .inputs import ImagePart, Interleaved, TextPart, coerce, coerce_many, image
from .instructions import Task, get_task, list_tasks, resolve_instruction

__version__ = "0.1.0"

_LAZY = {
    "Encoder": "mmembed.encoders.base",
    "load_encoder": "mmembed.encoders.registry",
    "Store": "mmembed.store",
    "Hit": "mmembed.store",
    "AddResult": "mmembed.store",
    "Reranker": "mmembed.rerankers.base",
    "load_reranker": "mmembed.rerankers.registry",
    "Pipeline": "mmembed.pipeline",
    "retrieve": "mmembed.pipeline",
    "load_documents": "mmembed.documents",
    "LoadOptions": "mmembed.documents",
    "DocumentChunk": "mmembed.documents",
    "DocumentError": "mmembed.documents",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmembed' has no attribute {name!r}")


__all__ = [
    "AddResult",
    "Encoder",
    "EncoderMismatchError",
    "Hit",
    "ImageLoadError",
    "ImagePart",
    "ImagePolicy",
    "InputError",
    "Interleaved",
    "MMEmbedError",
    "ModelLoadError",
    "Pipeline",
    "RemoteImageError",
    "Reranker",
    "Store",
    "StoreConnectionError",
    "StoreNotFoundError",
    "Task",
    "TextPart",
    "coerce",
    "coerce_many",
    "DocumentChunk",
    "DocumentError",
    "LoadOptions",
    "load_documents",
    "get_task",
    "image",
    "list_tasks",
    "load_encoder",
    "load_reranker",
    "resolve_instruction",
    "retrieve",
]
