"""Ranking metrics for retrieval evaluation: Recall@k, MRR@k and nDCG@k, in numpy, tie-aware.

Inputs are a score matrix ``(n_queries, n_docs)`` (higher is better) and, per query, the indices of its
relevant documents (binary relevance, any number of positives). Two choices matter and are made once here:

* **Recall@k is success@k**: 1 if at least one relevant document is in the top ``k``, else 0, averaged over
  queries. That is what M-BEIR, CLIP and UniIR report as "Recall@k"; with a single positive it equals the
  textbook recall. (Fractional recall would cap Fashion-MNIST's 1,000-positive classes at 0.01 for k=10.)
* **Ties are scored by their expectation under a random order** (McSherry & Najork, ECIR 2008): a block of
  equal scores that straddles rank ``k`` counts as the average over every order of that block. So a
  constant scorer gets exactly chance-level figures, no scorer gains from the position of the positive in
  the input, and results do not depend on the sort algorithm.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np

#: The metrics every evaluation reports, in table order.
METRIC_NAMES: tuple[str, ...] = ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10")

Group = tuple[int, int, int]  # (start rank, size, number of relevant documents in it)


def _as_matrix(scores: np.ndarray | Sequence[float] | Sequence[Sequence[float]]) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"scores must be a (n_queries, n_docs) matrix, got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError("scores have no documents (0 columns)")
    if np.isnan(arr).any():
        rows = np.flatnonzero(np.isnan(arr).any(axis=1))[:5].tolist()
        raise ValueError(f"scores contain NaN (query rows {rows}); a ranking needs comparable numbers")
    return arr


def _as_relevant(relevant: Iterable[Collection[int]] | Collection[int], n_queries: int, n_docs: int,
                 single: bool) -> list[np.ndarray]:
    rel_list = [relevant] if single else list(relevant)  # type: ignore[list-item]
    if len(rel_list) != n_queries:
        raise ValueError(f"got relevance for {len(rel_list)} queries but scores for {n_queries}")
    out: list[np.ndarray] = []
    for q, rel in enumerate(rel_list):
        if isinstance(rel, (int, np.integer)):
            rel = [rel]
        idx = np.unique(np.asarray(list(rel), dtype=np.int64))
        if idx.size == 0:
            raise ValueError(f"query {q} has no relevant document; drop it before scoring")
        if idx[0] < 0 or idx[-1] >= n_docs:
            raise ValueError(f"query {q}: relevant index {int(idx[0] if idx[0] < 0 else idx[-1])} is outside "
                             f"0..{n_docs - 1}")
        out.append(idx)
    return out


def tie_groups(row: np.ndarray, relevant: np.ndarray, depth: int) -> list[Group]:
    """The blocks of equal scores covering ranks ``0..depth-1`` of one query, best first.

    Each block is ``(start, size, n_relevant)``; a block may extend past ``depth`` (its ``size`` counts every
    document with that score), which is what the expected-value formulas need.
    """
    n = row.shape[0]
    depth = min(depth, n)
    if depth <= 0:
        return []
    threshold = np.partition(row, n - depth)[n - depth]  # the depth-th largest score
    cand = np.flatnonzero(row >= threshold)
    neg_vals = -row[cand]
    uniq, inverse, counts = np.unique(neg_vals, return_inverse=True, return_counts=True)
    is_rel = np.isin(cand, relevant)
    rel_counts = np.bincount(inverse, weights=is_rel.astype(np.float64), minlength=uniq.size).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return [(int(s), int(g), int(r)) for s, g, r in zip(starts, counts, rel_counts) if s < depth]


def _p_no_relevant(size: int, n_rel: int, slots: int) -> float:
    """P(none of the first ``slots`` places of a randomly ordered block holds a relevant document)."""
    if slots > size - n_rel:
        return 0.0
    p = 1.0
    for i in range(slots):
        p *= (size - n_rel - i) / (size - i)
    return p


def _success(groups: list[Group], k: int) -> float:
    p_miss = 1.0
    for start, size, n_rel in groups:
        if start >= k:
            break
        p_miss *= _p_no_relevant(size, n_rel, min(k - start, size))
    return 1.0 - p_miss


def _reciprocal_rank(groups: list[Group], k: int) -> float:
    for start, size, n_rel in groups:
        if start >= k:
            return 0.0
        if n_rel == 0:
            continue
        # the first relevant document is in this block: expected 1/rank over its random placement
        rr, p_before = 0.0, 1.0  # p_before: P(the first j places of the block are not relevant)
        for j in range(min(size - n_rel + 1, k - start)):
            rr += p_before * (n_rel / (size - j)) / (start + j + 1)
            p_before *= (size - n_rel - j) / (size - j)
        return rr
    return 0.0


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _ndcg(groups: list[Group], n_rel_total: int, k: int) -> float:
    disc = _discounts(k)
    dcg = 0.0
    for start, size, n_rel in groups:
        if start >= k:
            break
        if n_rel:
            dcg += (n_rel / size) * disc[start : min(start + size, k)].sum()
    ideal = disc[: min(n_rel_total, k)].sum()
    return float(dcg / ideal)


def per_query_metrics(
    scores: np.ndarray | Sequence[Sequence[float]],
    relevant: Iterable[Collection[int]],
    *,
    ks: Sequence[int] = (1, 5, 10),
    depth: int = 10,
) -> dict[str, np.ndarray]:
    """Every query's ``R@k`` for ``k`` in ``ks``, ``MRR@depth`` and ``nDCG@depth`` (arrays of length n_queries).

    Args:
        scores: ``(n_queries, n_docs)``; higher means more relevant. ``-inf`` is allowed, NaN is not.
        relevant: per query, the indices of its relevant documents (at least one each).
    """
    mat = _as_matrix(scores)
    rel = _as_relevant(relevant, mat.shape[0], mat.shape[1], single=False)
    if any(k < 1 for k in ks) or depth < 1:
        raise ValueError(f"cut-offs must be >= 1, got ks={list(ks)}, depth={depth}")
    reach = max(max(ks, default=1), depth)
    out = {f"R@{k}": np.zeros(mat.shape[0]) for k in ks}
    out[f"MRR@{depth}"] = np.zeros(mat.shape[0])
    out[f"nDCG@{depth}"] = np.zeros(mat.shape[0])
    for q in range(mat.shape[0]):
        groups = tie_groups(mat[q], rel[q], reach)
        for k in ks:
            out[f"R@{k}"][q] = _success(groups, k)
        out[f"MRR@{depth}"][q] = _reciprocal_rank(groups, depth)
        out[f"nDCG@{depth}"][q] = _ndcg(groups, rel[q].size, depth)
    return out


def retrieval_metrics(
    scores: np.ndarray | Sequence[Sequence[float]],
    relevant: Iterable[Collection[int]],
    *,
    ks: Sequence[int] = (1, 5, 10),
    depth: int = 10,
) -> dict[str, float]:
    """Mean of :func:`per_query_metrics` over queries: ``{"R@1": ..., "MRR@10": ..., "nDCG@10": ...}``."""
    return {name: float(v.mean()) for name, v in per_query_metrics(scores, relevant, ks=ks, depth=depth).items()}


def _one(scores: np.ndarray | Sequence[float], relevant: Collection[int] | int, name: str, **kw: object) -> float:
    mat = _as_matrix(scores)
    if mat.shape[0] != 1:
        raise ValueError(f"{name} takes one query's scores (a 1-D array); use per_query_metrics for a matrix")
    rel = _as_relevant(relevant, 1, mat.shape[1], single=True)  # type: ignore[arg-type]
    return float(per_query_metrics(mat, rel, **kw)[name][0])  # type: ignore[arg-type]


def recall_at_k(scores: np.ndarray | Sequence[float], relevant: Collection[int] | int, k: int) -> float:
    """Success@k of one query (see the module docstring): expected under random order of tied scores."""
    return _one(scores, relevant, f"R@{k}", ks=(k,), depth=k)


def mrr_at_k(scores: np.ndarray | Sequence[float], relevant: Collection[int] | int, k: int = 10) -> float:
    """Reciprocal rank of the first relevant document of one query, 0 beyond rank ``k`` (tie-aware)."""
    return _one(scores, relevant, f"MRR@{k}", ks=(1,), depth=k)


def ndcg_at_k(scores: np.ndarray | Sequence[float], relevant: Collection[int] | int, k: int = 10) -> float:
    """Binary-gain nDCG@k of one query with ``1/log2(rank+1)`` discounts (tie-aware)."""
    return _one(scores, relevant, f"nDCG@{k}", ks=(1,), depth=k)


def mean_metrics(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
    """Average per-query metric arrays collected chunk by chunk."""
    if not parts:
        return {}
    names = list(parts[0])
    return {n: float(np.concatenate([p[n] for p in parts]).mean()) for n in names}


__all__ = [
    "METRIC_NAMES",
    "mean_metrics",
    "mrr_at_k",
    "ndcg_at_k",
    "per_query_metrics",
    "recall_at_k",
    "retrieval_metrics",
    "tie_groups",
]
