"""The offline default reranker: first-stage dense score refined by test-time views, fused with BM25.

No reranking model ships in any package registry, so the default reranker combines signals that do:

* **dense, multi-view**: the first-stage encoder's cosine similarity, with every candidate *image* also
  embedded in a few test-time views (mirror image, slight zoom in and out) and the view embeddings averaged
  (a standard test-time augmentation: the encoder's errors on one rendering are partly independent of its
  errors on another). Image queries get the same views. Text-only candidates use the plain embedding -- or
  the first-stage score itself when the pipeline passes it, so nothing is re-embedded for them.
* **lexical**: BM25 (``bm25s``) of the query's text against the candidates' text parts, with the term
  statistics of the candidate set. It adds exact-word evidence (names, identifiers, rare terms) that a small
  dense model blurs.

Both signals are min-max normalised over the candidate set and mixed, ``(1 - w) * dense + w * lexical``
with ``w = lexical_weight`` when the query has text and some candidate has text, else the dense signal alone.
Scores are therefore relative to the candidate list they were computed on (0..1), which is what a reranker
needs; use the first-stage ``Hit.score`` for absolute thresholds.

Where it helps (see ``benchmarks/bench_rerank.py`` for the measured table): text candidates gain from BM25;
image-only candidates (e.g. Tux Paint stamps with no stored text) can gain only from the views.
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ..errors import InputError
from ..inputs import ImagePart, Interleaved, TextPart, coerce
from .base import Reranker

logger = logging.getLogger(__name__)

View = Callable[[Image.Image], Image.Image]


def _mirror(img: Image.Image) -> Image.Image:
    return ImageOps.mirror(img)


def _zoom(factor: float) -> View:
    """Zoom in (``factor > 1``: centre crop) or out (``< 1``: pad with the image's corner colour)."""

    def view(img: Image.Image) -> Image.Image:
        w, h = img.size
        if factor >= 1.0:
            cw, ch = max(1, round(w / factor)), max(1, round(h / factor))
            left, top = (w - cw) // 2, (h - ch) // 2
            return img.crop((left, top, left + cw, top + ch))
        pw, ph = max(w, round(w / factor)), max(h, round(h / factor))
        canvas = Image.new(img.mode, (pw, ph), img.getpixel((0, 0)))
        canvas.paste(img, ((pw - w) // 2, (ph - h) // 2))
        return canvas

    return view


#: Named test-time views of an image. ``identity`` is always included.
VIEWS: dict[str, View] = {
    "mirror": _mirror,
    "zoom_in": _zoom(1.15),
    "zoom_out": _zoom(0.87),
}
DEFAULT_VIEWS: tuple[str, ...] = ("mirror", "zoom_in", "zoom_out")
DEFAULT_LEXICAL_WEIGHT = 0.3

_FIRST_STAGE: contextvars.ContextVar[dict[int, float] | None] = contextvars.ContextVar("first_stage", default=None)


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to 0..1 over the set; a constant set maps to zeros (it carries no ranking information)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def bm25_scores(query: str, texts: Sequence[str], *, stopwords: str | None = "en") -> np.ndarray:
    """BM25 of ``query`` against ``texts`` with the statistics of ``texts`` (empty texts score 0)."""
    import bm25s

    scores = np.zeros(len(texts), dtype=np.float64)
    rows = [i for i, t in enumerate(texts) if t.strip()]
    if not rows or not query.strip():
        return scores
    corpus = bm25s.tokenize([texts[i] for i in rows], stopwords=stopwords, show_progress=False, return_ids=False)
    q_tokens = bm25s.tokenize([query], stopwords=stopwords, show_progress=False, return_ids=False)[0]
    if not q_tokens or not any(corpus):
        return scores
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    scores[rows] = np.asarray(retriever.get_scores(list(q_tokens)), dtype=np.float64)
    return scores


class FusionReranker(Reranker):
    """Multi-view dense score fused with BM25 (see the module docstring).

    Args:
        encoder: the first-stage :class:`~mmembed.encoders.base.Encoder` (same vector space as the store).
        lexical_weight: ``w`` in ``(1 - w) * dense + w * bm25`` (both min-max normalised over the set).
        views: names from :data:`VIEWS` embedded besides each image (``()`` turns views off).
        cache_size: candidate embeddings kept (by content hash) across calls; the same stored document is
            usually a candidate for many queries.
    """

    def __init__(self, encoder: Any, *, lexical_weight: float = DEFAULT_LEXICAL_WEIGHT,
                 views: Sequence[str] = DEFAULT_VIEWS, cache_size: int = 8192, name: str | None = None) -> None:
        if not 0.0 <= lexical_weight <= 1.0:
            raise ValueError(f"lexical_weight must be in [0, 1], got {lexical_weight}")
        unknown = [v for v in views if v not in VIEWS]
        if unknown:
            raise ValueError(f"unknown views {unknown}; known: {sorted(VIEWS)}")
        self.encoder = encoder
        self.image_policy = encoder.image_policy
        self.lexical_weight = float(lexical_weight)
        self.views = tuple(views)
        self.name = name or f"fusion(views={len(self.views)},bm25={self.lexical_weight:g})"
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = int(cache_size)

    # ---- public ----------------------------------------------------------------------------------------
    def score(self, query: Any, candidates: Sequence[Any], *, first_stage: Sequence[float] | None = None,
              **kwargs: Any) -> list[float]:
        """Scores over the whole candidate list as one set (BM25 statistics and normalisation need it).

        ``first_stage``: the candidates' first-stage cosine scores from the same encoder (the pipeline passes
        ``Hit.score``); text-only candidates then use them instead of being embedded again.
        """
        kwargs["batch_size"] = max(len(candidates), 1)
        if first_stage is None:
            return super().score(query, candidates, **kwargs)
        if len(first_stage) != len(candidates):
            raise InputError(f"got {len(first_stage)} first-stage scores for {len(candidates)} candidates")
        items: list[Any] = []
        known: dict[int, float] = {}
        for cand, s in zip(candidates, first_stage):
            try:
                item = coerce(cand)
            except InputError:
                item = cand  # the base class reports it with its id
            else:
                if s is not None and math.isfinite(float(s)):
                    known[id(item)] = float(s)
            items.append(item)
        token = _FIRST_STAGE.set(known)
        try:
            return super().score(query, items, **kwargs)
        finally:
            _FIRST_STAGE.reset(token)

    # ---- embeddings ------------------------------------------------------------------------------------
    def _with_views(self, item: Interleaved) -> list[Interleaved]:
        """The item itself, then one copy per view with every image replaced by that view."""
        out = [item]
        if not item.images:
            return out
        for name in self.views:
            view = VIEWS[name]
            parts: list[TextPart | ImagePart] = [
                ImagePart(pil=view(p.image)) if isinstance(p, ImagePart) else p for p in item.parts
            ]
            out.append(Interleaved(parts=parts))
        return out

    @staticmethod
    def _mean(vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float64).mean(axis=0)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def _query_vector(self, query: Interleaved, instruction: str | None) -> np.ndarray:
        variants = self._with_views(query)
        return self._mean(self.encoder.encode_queries(variants, instruction=instruction, batch_size=len(variants),
                                                      show_progress=False))

    def _candidate_vectors(self, items: Sequence[Interleaved]) -> np.ndarray:
        keys = [it.content_hash(self.image_policy) for it in items]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            expanded: list[Interleaved] = []
            spans: list[tuple[int, int]] = []
            for i in missing:
                views = self._with_views(items[i])
                spans.append((len(expanded), len(expanded) + len(views)))
                expanded.extend(views)
            vecs = self.encoder.encode_documents(expanded, batch_size=32, show_progress=False)
            for i, (a, b) in zip(missing, spans):
                self._remember(keys[i], self._mean(vecs[a:b]))
        return np.stack([self._cache[k] for k in keys])

    def _remember(self, key: str, vec: np.ndarray) -> None:
        self._cache[key] = vec
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # ---- scoring ---------------------------------------------------------------------------------------
    def dense_scores(self, query: Interleaved, candidates: Sequence[Interleaved], instruction: str | None
                     ) -> np.ndarray:
        known = _FIRST_STAGE.get() or {}
        dense = np.zeros(len(candidates), dtype=np.float64)
        todo = [i for i, c in enumerate(candidates) if c.images or id(c) not in known]
        for i, c in enumerate(candidates):
            if i not in todo:
                dense[i] = known[id(c)]
        if todo:
            q = self._query_vector(query, instruction)
            dense[todo] = self._candidate_vectors([candidates[i] for i in todo]) @ q
        return dense

    def _score_batch(self, query: Interleaved, candidates: Sequence[Interleaved], *,
                     instruction: str | None) -> list[float]:
        dense = minmax(self.dense_scores(query, candidates, instruction))
        w = self.lexical_weight
        texts = [c.text for c in candidates]
        if w > 0 and query.text.strip() and any(t.strip() for t in texts):
            lexical = bm25_scores(query.text, texts)
            if lexical.max() > 0:
                return ((1.0 - w) * dense + w * minmax(lexical)).tolist()
        return dense.tolist()


def load_default(name: str = "default", *, device: str | None = None, dtype: str | None = None,
                 encoder: Any = None, **kwargs: Any) -> FusionReranker:
    """The default reranker over ``encoder`` (an Encoder, a name/path, or None for the default encoder)."""
    from ..encoders.base import Encoder
    from ..encoders.registry import load_encoder

    if encoder is None or not isinstance(encoder, Encoder):
        encoder = load_encoder(encoder if encoder is not None else "default", device=device, dtype=dtype)
    return FusionReranker(encoder, **kwargs)


__all__ = ["DEFAULT_LEXICAL_WEIGHT", "DEFAULT_VIEWS", "FusionReranker", "VIEWS", "bm25_scores", "load_default",
           "minmax"]
