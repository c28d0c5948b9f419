"""Tux Paint stamp sets (Debian ``tuxpaint-stamps-default``, never trained on): ``tuxpaint``,
``tuxpaint-xling`` and ``tuxpaint-mixed`` (the modality-bias pool of images *and* caption texts)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import (
    DatasetError,
    EvalDataset,
    Pool,
    Subset,
    _content_tag,
    _group_queries,
    normalize_caption,
    sample_indices,
)

logger = logging.getLogger("mmembed.eval.datasets")

#: Languages of the ``tuxpaint-mixed`` text->text queries (translations shipped with the stamps; several scripts).
TEXT_QUERY_LANGUAGES: tuple[str, ...] = ("de", "es", "ja")


#: Languages reported by ``tuxpaint-xling``: several scripts and families, all translated for every stamp.
XLING_LANGUAGES: tuple[str, ...] = ("de", "es", "fr", "pt_BR", "ru", "ja", "zh_CN", "el")


def _stamps(stamps: Sequence[Any] | None) -> list[Any]:
    if stamps is not None:
        return list(stamps)
    from ...data.tuxpaint import load_tuxpaint

    return load_tuxpaint()


def _stamp_images_pool(stamps: list[Any], tag: str) -> Pool:
    return Pool(key=f"tuxpaint-images:{tag}", items=[Path(s.image_path) for s in stamps],
                ids=[s.id for s in stamps])


def tuxpaint(*, limit: int | None = None, seed: int = 0, stamps: Sequence[Any] | None = None,
             per_stamp: bool = False) -> EvalDataset:
    """English caption -> stamp image, and stamp image -> caption, over every captioned PNG stamp.

    ``limit`` keeps a fixed random sample of that many stamps (queries and pool shrink together).
    ``stamps`` replaces the fetched package (objects with ``id``, ``image_path``, ``caption``).
    ``per_stamp`` adds the subset ``text->image (per stamp)``: one query per stamp (its own caption, so a
    caption shared by two stamps is asked twice), the protocol of the first feasibility run.
    """
    all_stamps = _stamps(stamps)
    if not all_stamps:
        raise DatasetError("no captioned Tux Paint stamps found")
    chosen = [all_stamps[i] for i in sample_indices(len(all_stamps), limit, seed)]
    tag = _content_tag([s.image_path for s in chosen])
    images = _stamp_images_pool(chosen, tag)
    q_texts, q_rel = _group_queries([s.caption for s in chosen], range(len(chosen)))
    t2i = Subset("text->image", list(q_texts), q_rel, images, "text->image", query_texts=list(q_texts))
    # image -> text: the pool is the distinct captions; an image's relevant doc is its caption
    captions_pool = Pool(key=f"tuxpaint-captions:{tag}", items=list(q_texts),
                         ids=[f"caption:{i}" for i in range(len(q_texts))], texts=list(q_texts))
    caption_index = {normalize_caption(t): i for i, t in enumerate(q_texts)}
    i2t = Subset("image->text", [Path(s.image_path) for s in chosen],
                 [(caption_index[normalize_caption(s.caption)],) for s in chosen], captions_pool, "image->text",
                 query_ids=[s.id for s in chosen])
    subsets = [t2i, i2t]
    if per_stamp:
        query_of = {normalize_caption(t): i for i, t in enumerate(q_texts)}
        rows = [query_of[normalize_caption(s.caption)] for s in chosen]
        subsets.append(Subset("text->image (per stamp)", [q_texts[r] for r in rows], [q_rel[r] for r in rows],
                              images, "text->image", query_ids=[s.id for s in chosen],
                              query_texts=[q_texts[r] for r in rows]))
    return EvalDataset("tuxpaint", subsets, source="Debian tuxpaint-stamps-default (GPL-2)",
                       description=f"{len(chosen)} clip-art stamps; {len(q_texts)} distinct English captions")


def tuxpaint_xling(*, limit: int | None = None, seed: int = 0, stamps: Sequence[Any] | None = None,
                   languages: Sequence[str] = XLING_LANGUAGES) -> EvalDataset:
    """Translated caption -> stamp image, one subset per language, over the same image pool as ``tuxpaint``.

    Translations identical to the English caption (untranslated fallbacks) are left out, so every query is
    really in that language.
    """
    all_stamps = _stamps(stamps)
    if not all_stamps:
        raise DatasetError("no captioned Tux Paint stamps found")
    chosen = [all_stamps[i] for i in sample_indices(len(all_stamps), limit, seed)]
    images = _stamp_images_pool(chosen, _content_tag([s.image_path for s in chosen]))
    subsets = []
    for lang in languages:
        pairs = [(s.translations[lang], i) for i, s in enumerate(chosen)
                 if s.translations.get(lang)
                 and normalize_caption(s.translations[lang]) != normalize_caption(s.caption)]
        if not pairs:
            logger.warning("tuxpaint-xling: no %s translations in the selection; skipped", lang)
            continue
        texts, rel = _group_queries([p[0] for p in pairs], [p[1] for p in pairs])
        subsets.append(Subset(lang, list(texts), rel, images, "text->image", query_texts=list(texts)))
    if not subsets:
        raise DatasetError(f"none of the languages {list(languages)} has translations in the selection")
    return EvalDataset("tuxpaint-xling", subsets, source="Debian tuxpaint-stamps-default (GPL-2)",
                       description=f"{len(chosen)} stamps; captions in {', '.join(s.name for s in subsets)}")



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


def tuxpaint_mixed(*, limit: int | None = None, seed: int = 0, stamps: Sequence[Any] | None = None,
                   languages: Sequence[str] = TEXT_QUERY_LANGUAGES) -> EvalDataset:
    """Modality bias: one pool of stamp images + caption texts; text->image must return images (ModAcc@1).

    text->text queries must return texts, image->text queries (mirrored stamps) texts.

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


def tuxpaint_captioned(*, limit: int | None = None, seed: int = 0, stamps: Sequence[Any] | None = None
                       ) -> EvalDataset:
    """Image + text documents among text documents, asked in plain words: half the distinct captions are
    indexed as their stamps *with* the caption (an image + text document, as a PDF page with its text layer or
    a screenshot with its OCR text is), the other half as the caption text alone; each caption of the first
    half is asked with no instruction, and its image + text documents are the relevant ones. A model whose
    document adapter moves image-holding documents away from plain text queries loses them among the unrelated
    text documents here.
    """
    all_stamps = _stamps(stamps)
    if not all_stamps:
        raise DatasetError("no captioned Tux Paint stamps found")
    chosen = [all_stamps[i] for i in sample_indices(len(all_stamps), limit, seed)]
    by_caption: dict[str, list[Any]] = {}
    for s in chosen:
        by_caption.setdefault(normalize_caption(s.caption), []).append(s)
    keys = sorted(by_caption)
    if len(keys) < 2:
        raise DatasetError("tuxpaint-captioned needs at least two distinct captions")
    with_image, text_only = keys[0::2], keys[1::2]
    items: list[Any] = []
    ids: list[str] = []
    modalities: list[str] = []
    queries: list[str] = []
    relevant: list[tuple[int, ...]] = []
    for key in with_image:
        rel = []
        for s in by_caption[key]:
            rel.append(len(items))
            items.append({"text": s.caption, "image": str(s.image_path)})
            ids.append(f"captioned:{s.id}")
            modalities.append("image+text")
        queries.append(by_caption[key][0].caption.strip())
        relevant.append(tuple(rel))
    for key in text_only:
        items.append(by_caption[key][0].caption.strip())
        ids.append(f"text:{key}")
        modalities.append("text")
    tag = _content_tag([str(s.image_path) for s in chosen] + [s.caption for s in chosen])
    pool = MixedPool(key=f"tuxpaint-captioned:{tag}", items=items, ids=ids, modalities=modalities)
    sub = Subset("text->image+text (no instruction)", queries, relevant, pool, None, query_texts=list(queries))
    return EvalDataset(
        "tuxpaint-captioned", [sub], source="Debian tuxpaint-stamps-default (GPL-2)",
        description=f"image + text documents among text documents: {len(with_image)} captions indexed as their "
        f"stamps with the caption, {len(text_only)} as the caption alone; the first asked without an instruction")


def _mirrored(path: Any) -> Any:
    """The image at ``path`` flipped left-right (transparency kept: the loader puts it on white)."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        return ImageOps.mirror(img.convert("RGBA"))
