"""Score a dataset with an encoder (optionally reranked) and with baselines; format the results.

Dense retrieval here is exact: the pool is embedded once with ``encode_documents``, the queries with
``encode_queries(task=...)``, and every query is scored against every document by a dot product in numpy
(vectors are L2-normalised, so this is cosine similarity). That is what an ideal vector store returns, it is
deterministic, and it needs no Chroma -- the numbers measure the model, not an index.

Reranking takes each query's top ``fetch_k`` documents by dense score, scores them with
``Reranker.score(query, candidates, task=...)`` (plus ``first_stage=`` dense scores for rerankers that take
them, as :mod:`mmembed.pipeline` does) and puts them, in reranker order, above the rest (which keep
their dense order). With ``fetch_k=10`` the set in the top 10 is unchanged, so R@10 stays put and the
reranker shows in R@1, R@5, MRR@10 and nDCG@10.
"""

from __future__ import annotations

import inspect
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from .datasets import EvalDataset, Pool, Subset
from .metrics import METRIC_NAMES, mean_metrics, per_query_metrics
from .modality import modality_metrics

#: Baseline systems the runner knows: constant scores (exact chance level) and two lexical rankers.
BASELINES: tuple[str, ...] = ("chance", "tfidf", "bm25")

# at most this many float scores in memory at once (queries x documents per chunk)
_MAX_CHUNK_CELLS = 16_000_000


@dataclass
class Result:
    """One row of the results table: a system scored on one subset of a dataset."""

    dataset: str
    subset: str
    system: str
    metrics: dict[str, float]
    queries: int
    documents: int
    task: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- dense retrieval -----------------------------------------------------------------------------------
class DenseIndex:
    """Embeddings of pools and queries for one encoder, cached by pool key across subsets and datasets."""

    def __init__(self, encoder: Any, *, batch_size: int = 32, show_progress: bool | None = None) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.show_progress = show_progress
        self._docs: dict[str, np.ndarray] = {}

    def documents(self, pool: Pool) -> np.ndarray:
        if pool.key not in self._docs:
            vecs = self.encoder.encode_documents(pool.items, batch_size=self.batch_size,
                                                 show_progress=self.show_progress)
            self._docs[pool.key] = _check_vectors(vecs, len(pool), "document")
        return self._docs[pool.key]

    def queries(self, subset: Subset, task: str | None) -> np.ndarray:
        vecs = self.encoder.encode_queries(subset.queries, task=task, batch_size=self.batch_size,
                                           show_progress=self.show_progress)
        return _check_vectors(vecs, len(subset), "query")


def _check_vectors(vecs: Any, n: int, what: str) -> np.ndarray:
    arr = np.asarray(vecs, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise RuntimeError(f"encoder returned {what} embeddings of shape {arr.shape}, expected ({n}, dim)")
    if not np.isfinite(arr).all():
        raise RuntimeError(f"encoder returned non-finite {what} embeddings")
    return arr


def _chunks(n_queries: int, n_docs: int) -> list[tuple[int, int]]:
    step = max(1, min(n_queries, _MAX_CHUNK_CELLS // max(n_docs, 1)))
    return [(s, min(s + step, n_queries)) for s in range(0, n_queries, step)]


def rerank_scores(row: np.ndarray, candidates: np.ndarray, rerank: Sequence[float]) -> np.ndarray:
    """``row`` with ``candidates`` lifted above every other document, ordered by ``rerank`` (ties kept)."""
    values = np.asarray(rerank, dtype=np.float64)
    if values.shape != (len(candidates),):
        raise RuntimeError(f"reranker returned {values.shape[0] if values.ndim else 0} scores for "
                           f"{len(candidates)} candidates")
    if np.isnan(values).any():
        raise RuntimeError("reranker returned NaN scores")
    _, ordinal = np.unique(values, return_inverse=True)
    out = row.astype(np.float64, copy=True)
    finite = out[np.isfinite(out)]
    top = float(finite.max()) if finite.size else 0.0
    out[candidates] = top + 1.0 + ordinal
    return out


def _top_candidates(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best documents per row, best first (a tie at the cut is broken arbitrarily)."""
    n = scores.shape[1]
    k = min(k, n)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (scores.shape[0], 1))
    out = np.empty_like(part)
    for i in range(scores.shape[0]):
        cand = part[i]
        out[i] = cand[np.lexsort((cand, -scores[i, cand]))]
    return out


def takes_first_stage(reranker: Any) -> bool:
    """Whether ``reranker.score`` accepts ``first_stage=`` (the candidates' dense scores), as the pipeline
    passes them: such rerankers fuse the score instead of re-embedding text candidates."""
    try:
        return "first_stage" in inspect.signature(reranker.score).parameters
    except (TypeError, ValueError):
        return False


def _reranker_label(reranker: Any) -> str:
    return str(getattr(reranker, "name", type(reranker).__name__))


def evaluate_dense(
    subset: Subset,
    index: DenseIndex,
    *,
    task: str | None,
    reranker: Any = None,
    fetch_k: int = 10,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, float], dict[str, float] | None, float, float]:
    """Metrics of the encoder on ``subset`` (and after reranking, if a reranker is given).

    Returns ``(dense metrics, reranked metrics or None, dense seconds, rerank seconds)``.
    """
    t0 = time.perf_counter()
    docs = index.documents(subset.pool)
    queries = index.queries(subset, task)
    if docs.shape[1] != queries.shape[1]:
        raise RuntimeError(f"query dim {queries.shape[1]} != document dim {docs.shape[1]}")
    fuses_first_stage = reranker is not None and takes_first_stage(reranker)
    dense_parts: list[dict[str, np.ndarray]] = []
    rerank_parts: list[dict[str, np.ndarray]] = []
    rerank_seconds = 0.0
    for start, stop in _chunks(len(subset), docs.shape[0]):
        scores = queries[start:stop] @ docs.T
        rel = subset.relevant[start:stop]
        dense_parts.append({**per_query_metrics(scores, rel), **modality_metrics(scores, subset, start, stop)})
        if reranker is not None:
            t1 = time.perf_counter()
            top = _top_candidates(scores, fetch_k)
            lifted = np.empty(scores.shape, dtype=np.float64)
            for i in range(stop - start):
                q = start + i
                cands = top[i]
                extra = {"first_stage": [float(v) for v in scores[i, cands]]} if fuses_first_stage else {}
                values = reranker.score(subset.queries[q], [subset.pool.items[j] for j in cands], task=task,
                                        **extra)
                lifted[i] = rerank_scores(scores[i], cands, values)
                if progress:
                    progress(1)
            rerank_parts.append({**per_query_metrics(lifted, rel), **modality_metrics(lifted, subset, start, stop)})
            rerank_seconds += time.perf_counter() - t1
        elif progress:
            progress(stop - start)
    total = time.perf_counter() - t0
    return (mean_metrics(dense_parts), mean_metrics(rerank_parts) if reranker is not None else None,
            total - rerank_seconds, rerank_seconds)


# ---- baselines -----------------------------------------------------------------------------------------
def baseline_scores(name: str, subset: Subset) -> np.ndarray:
    """The ``(n_queries, n_docs)`` scores of a baseline system; lexical ones need text queries and documents."""
    if name == "chance":
        return np.zeros((len(subset), len(subset.pool)), dtype=np.float32)
    if subset.query_texts is None or subset.pool.texts is None:
        raise InputError(f"baseline {name!r} needs text queries and text documents; subset {subset.name!r} "
                         "has images")
    if name == "tfidf":
        try:
            from sklearn.feature_extraction.text import TfidfVectorizer
        except ImportError as exc:
            raise InputError(f"the tfidf baseline needs scikit-learn ({exc}): pip install 'mmembed[eval]', "
                             "or leave tfidf out of the baselines") from exc

        vec = TfidfVectorizer(sublinear_tf=True)
        docs = vec.fit_transform(subset.pool.texts)
        return np.asarray((vec.transform(subset.query_texts) @ docs.T).toarray(), dtype=np.float32)
    if name == "bm25":
        import bm25s

        corpus = bm25s.tokenize(subset.pool.texts, stopwords="english", return_ids=False, show_progress=False)
        retriever = bm25s.BM25()
        retriever.index(corpus, show_progress=False)
        q_tokens = bm25s.tokenize(subset.query_texts, stopwords="english", return_ids=False, show_progress=False)
        return np.stack([np.asarray(retriever.get_scores(list(t)), dtype=np.float32) for t in q_tokens])
    raise InputError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")


def _baseline_installed(name: str) -> bool:
    """Whether a default baseline can run; the tfidf one needs the optional scikit-learn (``mmembed[eval]``),
    and is left out of the default rows with a warning saying so when it is missing."""
    if name != "tfidf":
        return True
    try:
        import sklearn  # noqa: F401
    except ImportError:
        warnings.warn("the tfidf baseline is left out: it needs scikit-learn (pip install 'mmembed[eval]')",
                      stacklevel=3)
        return False
    return True


def baseline_applies(name: str, subset: Subset) -> bool:
    return name == "chance" or (subset.query_texts is not None and subset.pool.texts is not None)


# ---- one dataset -----------------------------------------------------------------------------------------
def resolve_reranker(reranker: Any, encoder: Any = None) -> Any:
    """A reranker object from a name/path (:func:`mmembed.pipeline.as_reranker`); objects pass through.

    The first-stage ``encoder`` is handed over so rerankers that re-embed (the default one) score in the
    space the candidates were retrieved in.
    """
    if reranker is None or not isinstance(reranker, str):
        return reranker
    from ..pipeline import as_reranker  # the one loader (mmembed.load_reranker, cached per process)

    return as_reranker(reranker, encoder=encoder)


def resolve_encoder(encoder: Any) -> Any:
    if isinstance(encoder, str):
        from ..encoders.registry import load_encoder

        return load_encoder(encoder)
    return encoder


def evaluate(
    dataset: EvalDataset,
    encoder: Any = None,
    *,
    reranker: Any = None,
    fetch_k: int = 10,
    task: str | None = None,
    baselines: Sequence[str] | bool = True,
    index: DenseIndex | None = None,
    batch_size: int = 32,
    show_progress: bool | None = None,
) -> list[Result]:
    """Score ``dataset`` and return one :class:`Result` per (subset, system).

    Args:
        encoder: an :class:`~mmembed.Encoder`, a name/path for :func:`mmembed.load_encoder`, or ``None`` to
            run baselines only.
        reranker: a reranker (anything with ``score(query, candidates, task=...)``) or a name for
            :func:`mmembed.load_reranker`; adds a reranked row beside the dense one.
        fetch_k: how many dense candidates per query the reranker sees.
        task: instruction task for every query, instead of each subset's own.
        baselines: ``True`` for chance plus the dataset's lexical baselines, ``False`` for none, or names.
        index: reuse document embeddings across calls (the same encoder on datasets sharing pools).
    """
    if fetch_k < 1:
        raise InputError(f"fetch_k must be >= 1, got {fetch_k}")
    if task is not None:
        from ..instructions import get_task

        get_task(task)  # fail early with the list of names
    encoder = resolve_encoder(encoder)
    reranker = resolve_reranker(reranker, encoder)
    if reranker is not None and encoder is None:
        raise InputError("a reranker needs an encoder to fetch its candidates")
    if baselines is True:
        names = ["chance", *(n for n in dataset.baselines if _baseline_installed(n))]
    elif baselines is False:
        names = []
    else:
        names = list(baselines)
        unknown = [n for n in names if n not in BASELINES]
        if unknown:
            raise InputError(f"unknown baseline(s) {unknown}; known: {', '.join(BASELINES)}")
    if encoder is not None and index is None:
        index = DenseIndex(encoder, batch_size=batch_size, show_progress=show_progress)
    if index is not None and encoder is not None and index.encoder is not encoder:
        raise InputError("index was built for another encoder")
    from ..progress import progress

    results: list[Result] = []
    for subset in dataset.subsets:
        sub_task = task if task is not None else subset.task
        base = dict(dataset=dataset.name, subset=subset.name, queries=len(subset), documents=len(subset.pool),
                    task=sub_task)
        if encoder is not None and index is not None:
            with progress(len(subset), f"{dataset.name} {subset.name}", "query", show=show_progress,
                          leave=False) as bar:
                dense, reranked, t_dense, t_rerank = evaluate_dense(
                    subset, index, task=sub_task, reranker=reranker, fetch_k=fetch_k, progress=bar.update)
            label = str(getattr(encoder, "name", "encoder"))
            results.append(Result(system=label, metrics=dense, seconds=t_dense, **base))  # type: ignore[arg-type]
            if reranked is not None:
                results.append(Result(system=f"{label} + {_reranker_label(reranker)}", metrics=reranked,
                                      seconds=t_dense + t_rerank, extra={"fetch_k": fetch_k},
                                      **base))  # type: ignore[arg-type]
        for name in names:
            if not baseline_applies(name, subset):
                continue
            t0 = time.perf_counter()
            parts = [{**per_query_metrics(chunk, subset.relevant[s:e]), **modality_metrics(chunk, subset, s, e)}
                     for (s, e), chunk in _baseline_chunks(name, subset)]
            results.append(Result(system=name, metrics=mean_metrics(parts), seconds=time.perf_counter() - t0,
                                  **{**base, "task": None}))  # type: ignore[arg-type]
    return results


def _baseline_chunks(name: str, subset: Subset):  # type: ignore[no-untyped-def]
    scores = baseline_scores(name, subset)
    for s, e in _chunks(len(subset), scores.shape[1]):
        yield (s, e), scores[s:e]


# ---- output ----------------------------------------------------------------------------------------------
def format_table(results: Sequence[Result], metrics: Sequence[str] | None = None) -> str:
    """A fixed-width text table, one row per result (default columns: the standard metrics, then any extra
    metric a dataset adds, such as ``ModAcc@1``)."""
    if metrics is None:
        extra = [m for r in results for m in r.metrics if m not in METRIC_NAMES]
        metrics = [*METRIC_NAMES, *dict.fromkeys(extra)]
    head = ["dataset", "subset", "system", "queries", "docs", *metrics]
    rows = [[r.dataset, r.subset, r.system, str(r.queries), str(r.documents),
             *[f"{r.metrics.get(m, float('nan')):.3f}" for m in metrics]] for r in results]
    widths = [max(len(head[i]), *(len(row[i]) for row in rows)) if rows else len(head[i]) for i in range(len(head))]
    numeric = set(range(3, len(head)))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def results_json(results: Sequence[Result], **meta: Any) -> str:
    return json.dumps({**meta, "results": [r.as_dict() for r in results]}, indent=2, ensure_ascii=False)


__all__ = [
    "BASELINES",
    "DenseIndex",
    "Result",
    "baseline_scores",
    "evaluate",
    "evaluate_dense",
    "format_table",
    "rerank_scores",
    "resolve_encoder",
    "resolve_reranker",
    "results_json",
]
