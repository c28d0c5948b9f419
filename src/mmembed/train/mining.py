"""Modality-aware hard-negative mining (MM-Embed, stage 2), in numpy.

For each training query, the stage-1 model ranks the whole pool. Its hard negatives are

* **wrong-modality candidates ranked above the positive** -- the caption text that beats the asked-for
  image: the modality bias the instruction must learn to overrule, and
* **right-modality candidates at ranks just below the top** (by default ranks 46-50 of the top 50) --
  hard but, that far down, rarely unlabelled positives,

never including *false negatives*: the positive itself, candidates with the positive's id, and candidates of
the positive's concept in the positive's modality (another drawing of the same apple). Candidates of the
same concept in the *other* modality are kept on purpose: they are the negatives that carry the lesson.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: cells of the (queries x pool) score matrix held at once
_CHUNK_CELLS = 8_000_000


@dataclass(frozen=True)
class MiningConfig:
    """``top_k``: depth of the ranking mined; ``right_ranks``: 1-based inclusive ranks whose right-modality
    candidates become negatives (default: the last five of ``top_k``); ``max_wrong``: at most this many
    wrong-modality negatives per query (the highest ranked)."""

    top_k: int = 50
    right_ranks: tuple[int, int] | None = None
    max_wrong: int = 8

    def window(self) -> tuple[int, int]:
        if self.right_ranks is not None:
            lo, hi = self.right_ranks
        else:
            lo, hi = max(1, self.top_k - 4), self.top_k
        if not 1 <= lo <= hi:
            raise ValueError(f"right_ranks must be 1 <= lo <= hi, got {(lo, hi)}")
        return lo, min(hi, self.top_k)


@dataclass
class MinedNegatives:
    """Per query: pool indices of its hard negatives and, beside them, why each was chosen."""

    negatives: list[list[int]]
    kinds: list[list[str]]  # "wrong-modality" or "right-modality"
    positive_rank: list[int | None]  # 1-based rank of the best positive, None when below top_k
    stats: dict[str, float | int] = field(default_factory=dict)


def _codes(values: Sequence[str | None], table: dict[str, int]) -> np.ndarray:
    """Integer codes for strings (``-1`` for None), shared across calls through ``table``."""
    return np.fromiter((-1 if v is None else table.setdefault(v, len(table)) for v in values), dtype=np.int64,
                       count=len(values))


def mine_row(scores: np.ndarray, *, positive: int, positive_id: int, concept: int, pool_ids: np.ndarray,
             pool_concepts: np.ndarray, pool_modalities: np.ndarray, cfg: MiningConfig,
             ) -> tuple[list[int], list[str], int | None]:
    """Hard negatives of one query from its ``scores`` over the pool (integer-coded ids/concepts/modalities).

    Returns ``(negatives, kinds, 1-based rank of the best positive or None below top_k)``. Ties are broken by
    pool order, so mining is deterministic.
    """
    n = scores.shape[0]
    k = min(cfg.top_k, n)
    part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    top = part[np.lexsort((part, -scores[part]))]
    target = pool_modalities[positive]
    is_pos = (pool_ids[top] == positive_id) | (top == positive)
    excluded = is_pos | ((concept >= 0) & (pool_concepts[top] == concept) & (pool_modalities[top] == target))
    hits = np.flatnonzero(is_pos)
    pos_rank = int(hits[0]) if hits.size else None  # 0-based within the top k
    lo, hi = cfg.window()
    wrong: list[int] = []
    right: list[int] = []
    for r in np.flatnonzero(~excluded).tolist():
        idx = int(top[r])
        if pool_modalities[idx] != target:
            if (pos_rank is None or r < pos_rank) and len(wrong) < cfg.max_wrong:
                wrong.append(idx)
        elif lo - 1 <= r <= hi - 1:
            right.append(idx)
    return wrong + right, ["wrong-modality"] * len(wrong) + ["right-modality"] * len(right), (
        None if pos_rank is None else pos_rank + 1)


def mine_hard_negatives(
    queries: np.ndarray,
    pool: np.ndarray,
    *,
    positives: Sequence[int],
    positive_ids: Sequence[str],
    concepts: Sequence[str | None],
    pool_ids: Sequence[str],
    pool_concepts: Sequence[str | None],
    pool_modalities: Sequence[str],
    cfg: MiningConfig = MiningConfig(),
) -> MinedNegatives:
    """Mine every query.

    ``queries`` ``(Q, d)`` and ``pool`` ``(P, d)``: normalised embeddings from the stage-1 model.
    ``positives[q]``: pool index of query q's positive; ``positive_ids[q]`` / ``concepts[q]``: its id and
    concept (what makes other candidates false negatives). ``pool_*``: id, concept and modality per document.
    """
    nq, npool = queries.shape[0], pool.shape[0]
    if not (len(positives) == len(positive_ids) == len(concepts) == nq):
        raise ValueError("need one positive, positive id and concept per query")
    if not (len(pool_ids) == len(pool_concepts) == len(pool_modalities) == npool):
        raise ValueError("need one id, concept and modality per pool document")
    ids: dict[str, int] = {}
    cons: dict[str, int] = {}
    mods: dict[str, int] = {}
    p_ids, p_cons, p_mods = _codes(pool_ids, ids), _codes(pool_concepts, cons), _codes(pool_modalities, mods)
    q_ids, q_cons = _codes(positive_ids, ids), _codes(concepts, cons)
    out = MinedNegatives([], [], [])
    step = max(1, _CHUNK_CELLS // max(npool, 1))
    for s in range(0, nq, step):
        block = queries[s:s + step] @ pool.T
        for i in range(block.shape[0]):
            q = s + i
            negs, kinds, rank = mine_row(block[i], positive=int(positives[q]), positive_id=int(q_ids[q]),
                                         concept=int(q_cons[q]), pool_ids=p_ids, pool_concepts=p_cons,
                                         pool_modalities=p_mods, cfg=cfg)
            out.negatives.append(negs)
            out.kinds.append(kinds)
            out.positive_rank.append(rank)
    n_wrong = sum(k.count("wrong-modality") for k in out.kinds)
    n_right = sum(k.count("right-modality") for k in out.kinds)
    ranked = [r for r in out.positive_rank if r is not None]
    out.stats = {
        "queries": nq,
        "wrong_modality_negatives": n_wrong,
        "right_modality_negatives": n_right,
        "queries_with_wrong_modality_above_positive": sum(1 for k in out.kinds if "wrong-modality" in k),
        "positive_at_rank_1": sum(1 for r in ranked if r == 1) / max(nq, 1),
        "positive_in_top_k": len(ranked) / max(nq, 1),
    }
    return out


__all__ = ["MinedNegatives", "MiningConfig", "mine_hard_negatives", "mine_row"]
