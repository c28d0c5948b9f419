"""Text reranking with a local sentence-transformers ``CrossEncoder`` checkpoint directory.

A text cross-encoder (for example an MS MARCO MiniLM reranker saved with ``CrossEncoder.save``, or any
``*ForSequenceClassification`` checkpoint with one output) reads the query and the candidate together, which
is what makes it better than comparing two embeddings. It cannot see pixels, so the rule is:

* **image parts are ignored**: the query text and each candidate's text are their text parts joined by
  newlines (``Interleaved.text``, exactly what the store keeps as the Chroma document);
* a **candidate with no text** (an image-only document) cannot be judged: it scores ``-inf``, is ranked
  after every candidate that has text, and a warning says how many there were;
* a **query with no text** (an image-only query) raises :class:`~mmembed.errors.InputError`: use the MLLM
  reranker or the default reranker for image queries;
* the task instruction is not given to the model (cross-encoders are not trained with one).

Scores are the checkpoint's own (sigmoid of the logit for the usual one-label rerankers: 0..1).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..encoders._torch import resolve_device
from ..encoders.base import image_policy_from_kwargs
from ..errors import InputError, ModelLoadError
from ..inputs import Interleaved
from .base import Reranker

logger = logging.getLogger(__name__)


class CrossEncoderReranker(Reranker):
    """A :class:`~mmembed.rerankers.base.Reranker` around ``sentence_transformers.CrossEncoder``."""

    def __init__(self, model: Any, *, name: str = "cross-encoder", image_policy: Any = None) -> None:
        self.model = model
        self.name = name
        if image_policy is not None:
            self.image_policy = image_policy

    def _score_batch(self, query: Interleaved, candidates: Sequence[Interleaved], *,
                     instruction: str | None) -> list[float]:
        qtext = query.text.strip()
        if not qtext:
            raise InputError(f"{self.name} reads text only and the query has no text ({query!r}); "
                             "use the MLLM or the default reranker for image queries")
        texts = [c.text.strip() for c in candidates]
        rows = [i for i, t in enumerate(texts) if t]
        scores = [-math.inf] * len(candidates)
        if len(rows) < len(candidates):
            msg = (f"{len(candidates) - len(rows)} candidate(s) have no text; the text cross-encoder "
                   f"{self.name} ignores images and ranks them last")
            logger.warning(msg)
            warnings.warn(msg, stacklevel=3)
        if rows:
            values = self.model.predict([(qtext, texts[i]) for i in rows], batch_size=len(rows),
                                        show_progress_bar=False, convert_to_numpy=True)
            for i, v in zip(rows, values.reshape(len(rows), -1)[:, 0].tolist()):
                scores[i] = float(v)
        return scores


def load_cross_encoder(path: str | os.PathLike[str], *, device: str | None = None, dtype: str | None = None,
                       max_length: int | None = None, **kwargs: Any) -> CrossEncoderReranker:
    """Load a local CrossEncoder directory (never downloads). ``max_length`` caps the pair length in tokens."""
    policy = image_policy_from_kwargs(kwargs)
    if kwargs:
        raise TypeError(f"load_cross_encoder got unexpected keyword arguments {sorted(kwargs)}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ModelLoadError(f"cross-encoder directory {root} does not exist")
    try:
        from sentence_transformers import CrossEncoder
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ModelLoadError("the cross-encoder reranker needs sentence-transformers") from exc
    model_kwargs = {"dtype": dtype} if dtype is not None else None
    try:
        model = CrossEncoder(str(root), device=str(resolve_device(device)), local_files_only=True,
                             max_length=max_length, model_kwargs=model_kwargs)
    except Exception as exc:
        raise ModelLoadError(f"cannot load {root} as a sentence-transformers CrossEncoder: {exc}") from exc
    if model.num_labels != 1:
        raise ModelLoadError(f"{root} has {model.num_labels} output labels; a reranker needs one relevance "
                             "score per pair (this looks like a classifier, e.g. NLI)")
    return CrossEncoderReranker(model, name=f"cross-encoder:{root.name}", image_policy=policy)


__all__ = ["CrossEncoderReranker", "load_cross_encoder"]
