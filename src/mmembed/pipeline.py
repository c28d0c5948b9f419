"""Retrieve -> rerank: the one code path the CLI, LangChain and LlamaIndex adapters call.

``retrieve`` asks the store for ``fetch_k`` candidates (cheap vector search), lets a reranker read each
candidate together with the query (expensive, so only on those few), and returns the best ``k`` hits. Each
hit keeps its first-stage ``score`` (cosine similarity) and gets a ``rerank_score``, so callers can show or
threshold either. Adapters add no logic of their own: they convert types and call this module.

What lives here, once:

* :func:`rerank` -- score a list of candidates (any inputs, or framework objects with a ``to_input``
  converter), sort best first (ties keep the input order) and cut to ``top_n``; :func:`rerank_hits` does it
  for store hits and :func:`retrieve` for a query against a store.
* **The rule for unreadable candidates.** A candidate that cannot be read (a stored image that is gone or
  corrupt, a framework object that does not convert) raises an :class:`~mmembed.errors.InputError` naming
  it; with ``on_error="skip"`` it is **left out of the results** and **reported**: one
  :class:`SkippedCandidatesWarning` (also logged) names each skipped candidate and why, and the returned
  :class:`Ranking` lists them in ``.skipped``. It is never returned as a result with a made-up score. The
  CLI, the LangChain and the LlamaIndex retrievers and rerankers all behave this way.
* :func:`as_reranker` and :func:`as_encoder` -- the one loader for rerankers and encoders named by the
  adapters (``mmembed.load_reranker`` / ``mmembed.load_encoder`` behind a per-process cache keyed by
  everything that changes the model), so a chain built per request does not reload a model.
  :func:`clear_model_cache` forgets them.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from dataclasses import dataclass

from .errors import InputError, describe
from .rerankers.base import Reranker
from .store import Hit, Skipped, Store

if TYPE_CHECKING:
    from .encoders.base import Encoder

OnError = Literal["raise", "skip"]

logger = logging.getLogger(__name__)


@dataclass
class Ranked:
    """A candidate's position in the input list and its rerank score."""

    index: int
    score: float


class SkippedCandidatesWarning(UserWarning):
    """Candidates that could not be read were left out of a ranking (``on_error="skip"``)."""


class Ranking(list):  # type: ignore[type-arg]
    """A ranked list, best first (of :class:`Ranked` from :func:`rerank`, of
    :class:`~mmembed.store.Hit` from :func:`rerank_hits` / :func:`retrieve`), plus the candidates left out
    because they could not be read: ``skipped`` (index in the input, id, reason)."""

    def __init__(self, items: Sequence[Any] = (), skipped: Sequence[Skipped] = ()) -> None:
        super().__init__(items)
        self.skipped: list[Skipped] = list(skipped)


def default_fetch_k(k: int) -> int:
    """Candidates fetched for reranking when not given: three times ``k``, at least 20."""
    return max(3 * k, 20)


# ---- loading, once per process ---------------------------------------------------------------------------
_lock = threading.RLock()
_encoders: dict[tuple[Any, ...], Any] = {}
_rerankers: dict[tuple[Any, ...], Any] = {}


def _cache_key(*parts: Any, kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    key = (*parts, tuple(sorted(kwargs.items())))
    try:
        hash(key)
    except TypeError:  # an unhashable backend option: load without caching
        return None
    return key


def _is_reranker(value: Any) -> bool:
    return isinstance(value, Reranker)


def as_encoder(encoder: Encoder | str | os.PathLike[str], *, device: str | None = None, dtype: str | None = None,
               **kwargs: Any) -> Encoder:
    """An Encoder as it is, or a name/directory loaded with :func:`mmembed.load_encoder` once per process
    (cached by name, ``device``, ``dtype`` and options)."""
    if not isinstance(encoder, (str, os.PathLike)):
        from .encoders.base import Encoder as _Encoder

        if isinstance(encoder, _Encoder):
            return encoder
        raise InputError(f"encoder must be an mmembed Encoder, a name or a model directory, got {describe(encoder)}")
    from .encoders.registry import load_encoder

    key = _cache_key(os.fspath(encoder), device, dtype, kwargs=kwargs)
    with _lock:
        if key is not None and key in _encoders:
            return _encoders[key]
        loaded = load_encoder(encoder, device=device, dtype=dtype, **kwargs)
        if key is not None:
            _encoders[key] = loaded
        return loaded


def as_reranker(reranker: Reranker | str | os.PathLike[str] | None, store: Store | None = None, *,
                encoder: Any = None, device: str | None = None, dtype: str | None = None,
                **kwargs: Any) -> Reranker | None:
    """A Reranker from a Reranker, a name (``"default"``) or a directory; ``None`` stays ``None``.

    Names and paths go through :func:`mmembed.load_reranker` with the first-stage encoder at hand (``encoder``,
    else the store's), so the default reranker re-scores in the vector space the candidates were retrieved in.
    Loaded rerankers are kept per process, keyed by name, encoder, ``device``, ``dtype`` and options.
    """
    if reranker is None or _is_reranker(reranker):
        return reranker
    if not isinstance(reranker, (str, os.PathLike)):
        raise InputError(f"reranker must be None, a Reranker, a name or a directory, got {describe(reranker)}")
    from .rerankers import registry

    if encoder is None and store is not None:
        encoder = store.encoder
    key = _cache_key(os.fspath(reranker), encoder, device, dtype, kwargs=kwargs)
    with _lock:
        if key is not None and key in _rerankers:
            return _rerankers[key]
        loaded = registry.load_reranker(reranker, encoder=encoder, device=device, dtype=dtype, **kwargs)
        if key is not None:
            _rerankers[key] = loaded
        return loaded


def clear_model_cache() -> None:
    """Forget every encoder and reranker loaded by :func:`as_encoder` / :func:`as_reranker` (frees memory when
    nothing else holds them; the next use loads again)."""
    with _lock:
        _encoders.clear()
        _rerankers.clear()


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
                 instruction: str | None = None, where: Any = None, on_error: OnError | None = None) -> Ranking:
        return retrieve(self.store, query, k=k, fetch_k=fetch_k if fetch_k is not None else self.fetch_k,
                        task=task, instruction=instruction, reranker=self.reranker, where=where,
                        on_error=on_error or self.on_error, batch_size=self.batch_size)

    def rerank_hits(self, query: Any, hits: list[Hit], *, k: int | None = None, task: str | None = None,
                    instruction: str | None = None, on_error: OnError | None = None) -> Ranking:
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


def _accepts(reranker: Any, name: str, *, any_keyword: bool = False) -> bool:
    """Whether ``reranker.score`` takes the keyword ``name`` (or, with ``any_keyword``, ``**kwargs``)."""
    try:
        params = inspect.signature(reranker.score).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
    return name in params or (any_keyword and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()))


def _report(skipped: Sequence[Skipped]) -> None:
    msg = (f"{len(skipped)} rerank candidate(s) could not be read and were left out: "
           + "; ".join(f"{s.id if s.id is not None else f'#{s.index}'}: {s.reason}" for s in skipped))
    logger.warning(msg)
    warnings.warn(msg, SkippedCandidatesWarning, stacklevel=3)


def rerank(reranker: Reranker, query: Any, candidates: Sequence[Any], *, top_n: int | None = None,
           task: str | None = None, instruction: str | None = None, on_error: OnError = "raise",
           batch_size: int = 16, ids: Sequence[str | None] | None = None,
           first_stage: Sequence[float] | None = None,
           to_input: Callable[[Any], Any] | None = None) -> Ranking:
    """Score ``candidates`` against ``query`` and return them as :class:`Ranked` (input index and score),
    best first, ties in input order, cut to ``top_n``.

    ``to_input`` converts each candidate to an mmembed input first (a LangChain Document, a LlamaIndex node);
    ``ids`` name the candidates in errors and reports; ``first_stage`` gives rerankers that fuse it (the
    default one) the candidates' first-stage scores. A candidate that cannot be converted or read raises an
    InputError naming it, or with ``on_error="skip"`` is left out and reported (see the module docstring).
    """
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if top_n is not None:
        _check_k("top_n", top_n)
    if ids is not None and len(ids) != len(candidates):
        raise InputError(f"got {len(ids)} ids for {len(candidates)} candidates")
    if first_stage is not None and len(first_stage) != len(candidates):
        raise InputError(f"got {len(first_stage)} first-stage scores for {len(candidates)} candidates")
    names: list[str | None] = list(ids) if ids is not None else [None] * len(candidates)
    skipped: list[Skipped] = []
    positions: list[int] = []  # input index of each candidate handed to the reranker
    items: list[Any] = []
    for i, cand in enumerate(candidates):
        if to_input is not None:
            try:
                cand = to_input(cand)
            except InputError as exc:
                if on_error == "raise":
                    raise
                skipped.append(Skipped(i, names[i], str(exc)))
                continue
        positions.append(i)
        items.append(cand)
    scores: list[float] = []
    if items:
        extra: dict[str, Any] = {}
        given = [names[i] for i in positions]
        if all(n is not None for n in given):
            extra["ids"] = given
        if first_stage is not None and _accepts(reranker, "first_stage"):
            fs = [first_stage[i] for i in positions]
            if all(x is not None and math.isfinite(float(x)) for x in fs):
                extra["first_stage"] = fs  # rerankers that fuse it need not re-embed text
        unreadable: list[tuple[int, str]] | None = [] if _accepts(reranker, "unreadable", any_keyword=True) else None
        if unreadable is not None:
            extra["unreadable"] = unreadable
        scores = [float(x) for x in reranker.score(query, items, task=task, instruction=instruction,
                                                    batch_size=batch_size, on_error=on_error, **extra)]
        if len(scores) != len(items):
            raise RuntimeError(f"{type(reranker).__name__} returned {len(scores)} scores for {len(items)} candidates")
        if any(math.isnan(x) for x in scores):
            raise RuntimeError(f"{type(reranker).__name__} returned NaN scores")
        if unreadable is None:  # a reranker that cannot say which: -inf is its mark for unreadable
            unreadable = [(j, "could not be read") for j, x in enumerate(scores) if x == -math.inf]
        for j, reason in unreadable:
            skipped.append(Skipped(positions[j], names[positions[j]], reason))
    left_out = {s.index for s in skipped}
    good = [j for j, i in enumerate(positions) if i not in left_out]
    good.sort(key=lambda j: -scores[j])  # stable: ties keep the input order
    if top_n is not None:
        good = good[:top_n]
    skipped.sort(key=lambda s: s.index)
    if skipped:
        _report(skipped)
    return Ranking([Ranked(positions[j], scores[j]) for j in good], skipped)


def rerank_hits(reranker: Reranker, query: Any, hits: Sequence[Hit], *, k: int | None = None,
                task: str | None = None, instruction: str | None = None, on_error: OnError = "raise",
                batch_size: int = 16) -> Ranking:
    """:func:`rerank` for store hits: sets each ``rerank_score`` and returns the hits best first, cut to ``k``.
    A hit whose images cannot be read raises an InputError naming its id, or with ``on_error="skip"`` is left
    out and reported (``.skipped`` of the result)."""
    hits = list(hits)
    if not hits:
        return Ranking()
    ranked = rerank(reranker, query, hits, top_n=k, task=task, instruction=instruction, on_error=on_error,
                    batch_size=batch_size, ids=[h.id for h in hits], first_stage=[h.score for h in hits],
                    to_input=Hit.as_input)  # None (nothing stored) is reported by the reranker with its id
    out = []
    for r in ranked:
        hits[r.index].rerank_score = r.score
        out.append(hits[r.index])
    return Ranking(out, ranked.skipped)


def retrieve(store: Store, query: Any, *, k: int = 10, fetch_k: int | None = None, task: str | None = None,
             instruction: str | None = None, reranker: Reranker | str | os.PathLike[str] | None = None,
             where: Any = None, on_error: OnError = "raise", batch_size: int = 16) -> Ranking:
    """Search ``store`` for ``query``; with a reranker, fetch ``fetch_k`` candidates (default
    :func:`default_fetch_k`), rerank them and return the top ``k`` with ``score`` and ``rerank_score``.

    ``reranker`` is None (first stage only), a Reranker, ``"default"`` or a reranker directory
    (:func:`as_reranker`). ``on_error`` applies to candidates whose stored images cannot be read: raise, or
    leave them out and report them (the result's ``.skipped``).
    """
    _check_k("k", k)
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    rr = as_reranker(reranker, store)
    if rr is None:
        if fetch_k is not None:
            _check_k("fetch_k", fetch_k)
        return Ranking(store.query(query, k=k, task=task, instruction=instruction, where=where))
    fetch = _check_k("fetch_k", fetch_k) if fetch_k is not None else default_fetch_k(k)
    if fetch < k:
        raise InputError(f"fetch_k ({fetch}) must be at least k ({k}): the reranker only reorders what was fetched")
    hits = store.query(query, k=fetch, task=task, instruction=instruction, where=where)
    return rerank_hits(rr, query, hits, k=k, task=task, instruction=instruction, on_error=on_error,
                       batch_size=batch_size)


__all__ = ["Pipeline", "Ranked", "Ranking", "SkippedCandidatesWarning", "as_encoder", "as_reranker",
           "clear_model_cache", "default_fetch_k", "rerank", "rerank_hits", "retrieve"]
