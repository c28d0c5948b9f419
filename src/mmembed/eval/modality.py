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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import (
    DatasetError,
    EvalDataset,
    Pool,
    Subset,
    _content_tag,
    _group_queries,
    _stamps,
    normalize_caption,
    sample_indices,
)

#: The metric this module adds to a subset's row.
MODALITY_METRIC = "ModAcc@1"

#: Languages of the text->text queries (translations shipped with the stamps; several scripts).
TEXT_QUERY_LANGUAGES: tuple[str, ...] = ("de", "es", "ja")


@dataclass
class MixedPool(Pool):
    """A :class:`Pool` that records each document's modality (``text``, ``image``, ``image+text``)."""

    modalities: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.modalities) != len(self.items):
            raise DatasetError(f"pool {self.key!r}: {len(self.items)} items but {len(self.modalities)} modalities")


@dataclass
class ModalitySubset(Subset):
    """A :class:`Subset` whose queries ask for one modality (``target_modality``) of a :class:`MixedPool`."""

    target_modality: str | None = None


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


def modality_metrics(scores: np.ndarray, subset: Subset, start: int = 0, stop: int | None = None,
                     ) -> dict[str, np.ndarray]:
    """``{"ModAcc@1": per-query values}`` for the queries ``start:stop`` of ``subset`` (the rows of
    ``scores``) when it asks for one modality of a :class:`MixedPool`; ``{}`` otherwise, so the runner can
    call it for every subset."""
    target = getattr(subset, "target_modality", None)
    modalities = getattr(subset.pool, "modalities", None)
    if not target or not modalities:
        return {}
    return {MODALITY_METRIC: modality_top1(scores, modalities, target)}


def tuxpaint_mixed(*, limit: int | None = None, seed: int = 0, stamps: Sequence[Any] | None = None,
                   languages: Sequence[str] = TEXT_QUERY_LANGUAGES) -> EvalDataset:
    """Mixed pool of stamp images and caption texts: text->image must return images, text->text texts.

    ``limit`` keeps a fixed random sample of that many stamps (pool and queries shrink together);
    ``stamps`` replaces the fetched package (objects with ``id``, ``image_path``, ``caption``,
    ``translations``).
    """
    all_stamps = _stamps(stamps)
    if not all_stamps:
        raise DatasetError("no captioned Tux Paint stamps found")
    chosen = [all_stamps[i] for i in sample_indices(len(all_stamps), limit, seed)]
    n = len(chosen)
    items: list[Any] = [Path(s.image_path) for s in chosen] + [s.caption for s in chosen]
    ids = [f"image:{s.id}" for s in chosen] + [f"text:{s.id}" for s in chosen]
    modalities = ["image"] * n + ["text"] * n
    tag = _content_tag([s.image_path for s in chosen] + [s.caption for s in chosen])
    pool = MixedPool(key=f"tuxpaint-mixed:{tag}", items=items, ids=ids, modalities=modalities)

    # text->image: distinct English captions; relevant = the images with that caption
    q_texts, q_rel = _group_queries([s.caption for s in chosen], range(n))
    t2i = ModalitySubset("text->image", list(q_texts), q_rel, pool, "text->image", query_texts=list(q_texts),
                         target_modality="image")

    # text->text: translated captions; relevant = the English caption texts (every stamp sharing it)
    texts_of: dict[str, list[int]] = {}
    for j, s in enumerate(chosen):
        texts_of.setdefault(normalize_caption(s.caption), []).append(n + j)
    pairs = []
    for lang in languages:
        for s in chosen:
            tr = (s.translations or {}).get(lang)
            if tr and normalize_caption(tr) != normalize_caption(s.caption):
                pairs.append((tr, texts_of[normalize_caption(s.caption)]))
    if not pairs:
        raise DatasetError(f"none of the languages {list(languages)} has translations in the selection")
    grouped: dict[str, tuple[str, set[int]]] = {}
    for text, rel in pairs:
        key = normalize_caption(text)
        shown, acc = grouped.setdefault(key, (text.strip(), set()))
        acc.update(rel)
    t2t_queries = [v[0] for v in grouped.values()]
    t2t = ModalitySubset("text->text", t2t_queries, [tuple(sorted(v[1])) for v in grouped.values()], pool,
                         "text->text", query_texts=list(t2t_queries), target_modality="text")

    # image->text: each stamp's image mirrored; relevant = the caption texts equal to its caption
    i2t = ModalitySubset("image->text", [_mirrored(s.image_path) for s in chosen],
                         [tuple(texts_of[normalize_caption(s.caption)]) for s in chosen], pool, "image->text",
                         query_ids=[f"mirrored:{s.id}" for s in chosen], target_modality="text")
    return EvalDataset(
        "tuxpaint-mixed", [t2i, t2t, i2t], source="Debian tuxpaint-stamps-default (GPL-2)",
        description=f"modality bias: pool of {n} stamp images + {n} caption texts; {len(q_texts)} text->image "
        f"queries, {len(t2t_queries)} translated text->text queries ({', '.join(languages)}), {n} mirrored "
        "image->text queries")


def _mirrored(path: Any) -> Any:
    """The image at ``path`` flipped left-right (transparency kept: the loader puts it on white)."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        return ImageOps.mirror(img.convert("RGBA"))


__all__ = ["MODALITY_METRIC", "MixedPool", "ModalitySubset", "TEXT_QUERY_LANGUAGES", "modality_metrics", "modality_top1", "tuxpaint_mixed"]
