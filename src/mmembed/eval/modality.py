"""The modality-bias benchmark: one pool holding images *and* texts, queries that ask for one of them.

MM-Embed's central finding is that a universal retriever asked for an image with a text query tends to
return text, because text-text similarity dominates. ``tuxpaint-mixed`` measures exactly that on the Tux
Paint stamps (never trained on): the pool is every stamp image plus every stamp caption as a separate text
document, so a text->image query's own caption sits in the pool as a perfect-looking wrong answer.

* ``text->image``: the English captions with the ``text->image`` instruction; relevant = the images carrying
  that caption. Must return images.
* ``text->text``: the translated captions (several languages) with the ``text->text`` instruction; relevant =
  the English caption texts they translate. Must return texts.
* ``image->text``: every stamp image mirrored left-right (so the query is not byte-identical to its own
  image in the pool, which is still the nearest-looking wrong answer) with the ``image->text`` instruction;
  relevant = the caption texts of that stamp. Must return texts.

Besides the usual metrics, each row reports ``ModAcc@1``: the share of queries whose top-1 document has the
asked modality (ties at the top count fractionally), computed by :func:`modality_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# The ``tuxpaint-mixed`` builder and its pool/subset types live with the other Tux Paint sets; they are
# re-exported here for existing imports (this module depends on the datasets, never the reverse).
from .datasets.stamps import TEXT_QUERY_LANGUAGES, MixedPool, ModalitySubset, tuxpaint_mixed

#: The metric this module adds to a subset's row.
MODALITY_METRIC = "ModAcc@1"


def modality_top1(scores: np.ndarray, doc_modalities: Sequence[str] | np.ndarray, target: str) -> np.ndarray:
    """Per query (row of ``scores``): the share of its top-scoring documents that have modality ``target``.

    With no tie at the top this is 1.0 or 0.0; a tie counts as the expected value under random order.
    """
    mat = np.asarray(scores, dtype=np.float64)
    if mat.ndim != 2 or mat.shape[1] != len(doc_modalities):
        raise ValueError(f"scores {mat.shape} do not match {len(doc_modalities)} document modalities")
    is_target = np.asarray([m == target for m in doc_modalities], dtype=np.float64)
    best = mat.max(axis=1, keepdims=True)
    at_top = mat == best
    return (at_top * is_target).sum(axis=1) / at_top.sum(axis=1)


def modality_metrics(scores: np.ndarray, subset: Any, start: int = 0, stop: int | None = None,
                     ) -> dict[str, np.ndarray]:
    """``{"ModAcc@1": per-query values}`` for the queries ``start:stop`` of ``subset`` (the rows of
    ``scores``) when it asks for one modality of a :class:`MixedPool`; ``{}`` otherwise, so the runner can
    call it for every subset."""
    target = getattr(subset, "target_modality", None)
    modalities = getattr(subset.pool, "modalities", None)
    if not target or not modalities:
        return {}
    return {MODALITY_METRIC: modality_top1(scores, modalities, target)}


__all__ = ["MODALITY_METRIC", "MixedPool", "ModalitySubset", "TEXT_QUERY_LANGUAGES", "modality_metrics", "modality_top1", "tuxpaint_mixed"]
