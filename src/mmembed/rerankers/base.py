"""The Reranker protocol: score (query, candidate) pairs jointly, higher is more relevant.

Backends implement :meth:`Reranker._score_batch` on coerced items with decoded images. Coercion, task
instructions, batching, progress, and the bad-candidate policy (raise, or ``on_error="skip"``: score it lowest
and warn with its id) live here once, so the LangChain and LlamaIndex rerankers are thin faces of this class.
"""

from __future__ import annotations

import logging
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ImageLoadError, InputError
from ..images import DEFAULT_POLICY, ImagePolicy
from ..inputs import Interleaved, coerce
from ..instructions import resolve_instruction

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]


@dataclass
class Ranked:
    """A candidate's position in the input list and its rerank score."""

    index: int
    score: float


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
    ) -> list[float]:
        """One score per candidate, in input order. A candidate that cannot be read raises an InputError
        naming it (by ``ids[i]`` when given), or with ``on_error="skip"`` gets ``-inf`` and a warning."""
        if on_error not in ("raise", "skip"):
            raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        q = coerce(query, where="rerank query")
        q.load_images(self.image_policy)
        instr = resolve_instruction(task, instruction)
        scores: list[float] = [-math.inf] * len(candidates)
        good: list[tuple[int, Interleaved]] = []
        bad: list[str] = []
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
                bad.append(str(exc))
                continue
            good.append((i, item))
        if bad:
            msg = f"{len(bad)} rerank candidate(s) could not be read and were scored lowest: " + "; ".join(bad)
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

    def rerank(
        self,
        query: Any,
        candidates: Sequence[Any],
        *,
        top_n: int | None = None,
        task: str | None = None,
        instruction: str | None = None,
        **kwargs: Any,
    ) -> list[Ranked]:
        """Candidates sorted by score (stable for ties), cut to ``top_n``."""
        scores = self.score(query, candidates, task=task, instruction=instruction, **kwargs)
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        if top_n is not None:
            order = order[:top_n]
        return [Ranked(i, scores[i]) for i in order]

    @abstractmethod
    def _score_batch(self, query: Interleaved, candidates: Sequence[Interleaved], *,
                     instruction: str | None) -> Sequence[float]:
        """Scores for ``candidates`` against ``query`` (images decoded; use ``part.image``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
