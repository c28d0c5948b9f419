"""Load mmembed models once per process.

LangChain code tends to build a fresh ``MMEmbedEmbeddings`` / retriever / reranker per chain, per request or
per test. Loading a model is the slow part, so the three classes share loaded models through this small
cache, keyed by everything that changes the model (name or path, device, dtype, backend options).
"""

from __future__ import annotations

import os
import threading
from typing import Any

_lock = threading.Lock()
_encoders: dict[tuple[Any, ...], Any] = {}
_rerankers: dict[tuple[Any, ...], Any] = {}


def _key(name: str | os.PathLike[str], device: str | None, dtype: str | None, kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    key = (os.fspath(name), device, dtype, tuple(sorted(kwargs.items())))
    try:
        hash(key)
    except TypeError:  # unhashable backend option: load without caching
        return None
    return key


def get_encoder(name: str | os.PathLike[str], *, device: str | None = None, dtype: str | None = None,
                **kwargs: Any) -> Any:
    """``mmembed.load_encoder`` with a per-process cache."""
    from mmembed import load_encoder

    key = _key(name, device, dtype, kwargs)
    with _lock:
        if key is not None and key in _encoders:
            return _encoders[key]
        encoder = load_encoder(name, device=device, dtype=dtype, **kwargs)
        if key is not None:
            _encoders[key] = encoder
        return encoder


def get_reranker(name: str | os.PathLike[str], **kwargs: Any) -> Any:
    """``mmembed.load_reranker`` with a per-process cache."""
    from mmembed import load_reranker

    key = _key(name, None, None, kwargs)
    with _lock:
        if key is not None and key in _rerankers:
            return _rerankers[key]
        reranker = load_reranker(name, **kwargs)
        if key is not None:
            _rerankers[key] = reranker
        return reranker


def clear_cache() -> None:
    """Forget every cached model (frees memory; the next use loads again)."""
    with _lock:
        _encoders.clear()
        _rerankers.clear()
