"""The Reranker protocol: score (query, candidate) pairs jointly, higher is more relevant.

Backends implement :meth:`Reranker._score_batch` on coerced items with decoded images. Coercion, task
instructions and batching live here once. Ranking a list (sort, cut, leaving out and reporting candidates
that cannot be read) is :func:`mmembed.pipeline.rerank`, used by the retrieve pipeline, the CLI and the
LangChain and LlamaIndex adapters (it replaces the former ``Reranker.rerank`` method, so this module stays
below the pipeline and the two do not import each other).
"""

from __future__ import annotations

import logging
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

from ..errors import ImageLoadError, InputError
from ..images import DEFAULT_POLICY, ImagePolicy
from ..inputs import Interleaved, coerce
from ..instructions import resolve_instruction

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]


class Reranker(ABC):
    name: str = "reranker"
    image_policy: ImagePolicy = DEFAULT_POLICY

    def score(
        self,
        query: Any,
        candidates: Sequence[Any],
        *,
        task: str | None = None,
        instruction: str | None = None,
        batch_size: int = 16,
        show_progress: bool | None = None,
        on_error: OnError = "raise",
        ids: Sequence[str] | None = None,
        unreadable: list[tuple[int, str]] | None = None,
    ) -> list[float]:
        """One score per candidate, in input order. A candidate that cannot be read raises an InputError
        naming it (by ``ids[i]`` when given), or with ``on_error="skip"`` gets ``-inf`` (never a real score)
        and is reported: appended as ``(index, reason)`` to ``unreadable`` when the caller passes a list (it
        reports them itself, as :func:`mmembed.pipeline.rerank` does), else in a warning."""
        if on_error not in ("raise", "skip"):
            raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        q = coerce(query, where="rerank query")
        q.load_images(self.image_policy)
        instr = resolve_instruction(task, instruction)
        scores: list[float] = [-math.inf] * len(candidates)
        good: list[tuple[int, Interleaved]] = []
        bad: list[tuple[int, str]] = []
        for i, cand in enumerate(candidates):
            name = f"candidate #{i}" + (f" (id {ids[i]!r})" if ids is not None else "")
            try:
                item = coerce(cand, where=name)
                for part in item.images:
                    try:
                        part.load(self.image_policy)
                    except ImageLoadError as exc:
                        raise type(exc)(f"{name}: {exc}") from exc
            except InputError as exc:
                if on_error == "raise":
                    raise
                bad.append((i, str(exc)))
                continue
            good.append((i, item))
        if unreadable is not None:
            unreadable.extend(bad)
        elif bad:
            msg = (f"{len(bad)} rerank candidate(s) could not be read and were scored -inf: "
                   + "; ".join(reason for _, reason in bad))
            logger.warning(msg)
            warnings.warn(msg, stacklevel=2)
        from tqdm.auto import tqdm

        show = bool(show_progress) if show_progress is not None else False
        with tqdm(total=len(good), desc="reranking", disable=not show, leave=False) as bar:
            for start in range(0, len(good), max(1, batch_size)):
                chunk = good[start : start + batch_size]
                values = self._score_batch(q, [c for _, c in chunk], instruction=instr)
                if len(values) != len(chunk):
                    raise RuntimeError(f"{type(self).__name__} returned {len(values)} scores for {len(chunk)}")
                for (i, _), v in zip(chunk, values):
                    scores[i] = float(v)
                bar.update(len(chunk))
        return scores

    @abstractmethod
    def _score_batch(self, query: Interleaved, candidates: Sequence[Interleaved], *,
                     instruction: str | None) -> Sequence[float]:
        """Scores for ``candidates`` against ``query`` (images decoded; use ``part.image``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

