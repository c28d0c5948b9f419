"""Retrieve -> rerank: the one code path the CLI, LangChain and LlamaIndex adapters call.

``retrieve`` asks the store for ``fetch_k`` candidates (cheap vector search), lets a reranker read each
candidate together with the query (expensive, so only on those few), and returns the best ``k`` hits. Each
hit keeps its first-stage ``score`` (cosine similarity) and gets a ``rerank_score``, so callers can show or
threshold either. Adapters add no logic of their own: they convert types and call this.
"""

from __future__ import annotations

import inspect
import math
import os
from typing import Any, Literal

from .errors import InputError, describe
from .rerankers.base import Reranker
from .store import Hit, Store

OnError = Literal["raise", "skip"]


def default_fetch_k(k: int) -> int:
    """Candidates fetched for reranking when not given: three times ``k``, at least 20."""
    return max(3 * k, 20)


def as_reranker(reranker: Reranker | str | os.PathLike[str] | None, store: Store | None = None) -> Reranker | None:
    """A Reranker from a Reranker, a name (``"default"``) or a directory; ``None`` stays ``None``.

    Names and paths are loaded with the store's encoder at hand, so the default reranker re-scores in the
    same vector space the candidates were retrieved in.
    """
    if reranker is None or isinstance(reranker, Reranker):
        return reranker
    if isinstance(reranker, (str, os.PathLike)):
        from .rerankers.registry import load_reranker

        return load_reranker(reranker, encoder=store.encoder if store is not None else None)
    raise InputError(f"reranker must be None, a Reranker, a name or a directory, got {describe(reranker)}")


class Pipeline:
    """A store and an optional reranker, queried together.

    >>> pipe = Pipeline(Store("db", encoder="default"), reranker="default")
    >>> hits = pipe.retrieve("a red bicycle", k=5, task="text->image")
    """

    def __init__(self, store: Store, reranker: Reranker | str | os.PathLike[str] | None = None, *,
                 fetch_k: int | None = None, on_error: OnError = "raise", batch_size: int = 16) -> None:
        self.store = store
        self._reranker_spec = reranker
        self._reranker: Reranker | None = reranker if isinstance(reranker, Reranker) else None
        self.fetch_k = fetch_k
        self.on_error = on_error
        self.batch_size = batch_size

    @property
    def reranker(self) -> Reranker | None:
        if self._reranker is None and self._reranker_spec is not None:
            self._reranker = as_reranker(self._reranker_spec, self.store)
        return self._reranker

    def retrieve(self, query: Any, *, k: int = 10, fetch_k: int | None = None, task: str | None = None,
                 instruction: str | None = None, where: Any = None, on_error: OnError | None = None) -> list[Hit]:
        return retrieve(self.store, query, k=k, fetch_k=fetch_k if fetch_k is not None else self.fetch_k,
                        task=task, instruction=instruction, reranker=self.reranker, where=where,
                        on_error=on_error or self.on_error, batch_size=self.batch_size)

    def rerank_hits(self, query: Any, hits: list[Hit], *, k: int | None = None, task: str | None = None,
                    instruction: str | None = None, on_error: OnError | None = None) -> list[Hit]:
        """Rerank hits that came from elsewhere (a LangChain/LlamaIndex retriever); see :func:`rerank_hits`."""
        reranker = self.reranker
        if reranker is None:
            raise InputError("this pipeline has no reranker")
        return rerank_hits(reranker, query, hits, k=k, task=task, instruction=instruction,
                           on_error=on_error or self.on_error, batch_size=self.batch_size)

    def __repr__(self) -> str:
        return f"Pipeline(store={self.store!r}, reranker={self._reranker_spec!r})"


def _check_k(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {describe(value)}")
    return value


def _takes_first_stage(reranker: Reranker) -> bool:
    try:
        return "first_stage" in inspect.signature(reranker.score).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


def rerank_hits(reranker: Reranker, query: Any, hits: list[Hit], *, k: int | None = None, task: str | None = None,
                instruction: str | None = None, on_error: OnError = "raise", batch_size: int = 16) -> list[Hit]:
    """Score ``hits`` against ``query``, set each ``rerank_score``, return them best first (ties keep the
    first-stage order), cut to ``k``. A hit whose images cannot be read raises an InputError naming its id,
    or with ``on_error="skip"`` scores ``-inf`` (listed last) and is named in a warning."""
    if not hits:
        return []
    candidates = [h.as_input() for h in hits]  # None (nothing stored) is reported by the reranker with its id
    extra: dict[str, Any] = {}
    if _takes_first_stage(reranker) and all(math.isfinite(h.score) for h in hits):
        extra["first_stage"] = [h.score for h in hits]  # rerankers that fuse it need not re-embed text
    scores = reranker.score(query, candidates, task=task, instruction=instruction, batch_size=batch_size,
                            on_error=on_error, ids=[h.id for h in hits], **extra)
    for hit, s in zip(hits, scores):
        hit.rerank_score = float(s)
    order = sorted(range(len(hits)), key=lambda i: -scores[i])  # stable: ties keep the first-stage order
    ranked = [hits[i] for i in order]
    return ranked[:k] if k is not None else ranked


def retrieve(store: Store, query: Any, *, k: int = 10, fetch_k: int | None = None, task: str | None = None,
             instruction: str | None = None, reranker: Reranker | str | os.PathLike[str] | None = None,
             where: Any = None, on_error: OnError = "raise", batch_size: int = 16) -> list[Hit]:
    """Search ``store`` for ``query``; with a reranker, fetch ``fetch_k`` candidates (default
    :func:`default_fetch_k`), rerank them and return the top ``k`` with ``score`` and ``rerank_score``.

    ``reranker`` is None (first stage only), a Reranker, ``"default"`` or a reranker directory.
    ``on_error`` applies to candidates whose stored images cannot be read (see :func:`rerank_hits`).
    """
    _check_k("k", k)
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    rr = as_reranker(reranker, store)
    if rr is None:
        if fetch_k is not None:
            _check_k("fetch_k", fetch_k)
        return store.query(query, k=k, task=task, instruction=instruction, where=where)
    fetch = _check_k("fetch_k", fetch_k) if fetch_k is not None else default_fetch_k(k)
    if fetch < k:
        raise InputError(f"fetch_k ({fetch}) must be at least k ({k}): the reranker only reorders what was fetched")
    hits = store.query(query, k=fetch, task=task, instruction=instruction, where=where)
    return rerank_hits(rr, query, hits, k=k, task=task, instruction=instruction, on_error=on_error,
                       batch_size=batch_size)


__all__ = ["Pipeline", "as_reranker", "default_fetch_k", "rerank_hits", "retrieve"]
