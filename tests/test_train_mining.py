"""Modality-aware hard-negative mining on hand-made rankings: which candidates become negatives, and which
never may (false negatives)."""

from __future__ import annotations

import numpy as np
import pytest

from mmembed.train.mining import MiningConfig, mine_hard_negatives


def _unit(angles: list[float]) -> np.ndarray:
    """2-d unit vectors; a query at angle 0 scores them in decreasing order of cos(angle)."""
    a = np.asarray(angles, dtype=np.float64)
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


# pool: index, modality, concept, id. The query asks for an image of concept "apple"; its positive is #4.
POOL = [
    ("text", "apple", "t-apple"),    # 0  rank 1: its own caption, wrong modality, same concept -> negative
    ("text", "pear", "t-pear"),      # 1  rank 2: wrong modality above the positive -> negative
    ("image", "apple", "i-apple-2"),  # 2  rank 3: another drawing of the apple -> false negative, excluded
    ("image", "pear", "i-pos-copy"),  # 3  rank 4: carries the positive's id -> excluded
    ("image", "apple", "i-apple"),   # 4  rank 5: the positive
    ("text", "plum", "t-plum"),      # 5  rank 6: wrong modality *below* the positive -> not a negative
    ("image", "plum", "i-plum"),     # 6  rank 7: right modality above the window -> not a negative
    ("image", "fig", "i-fig"),       # 7  rank 8: right modality in the window (ranks 8-9) -> negative
    ("image", "kiwi", "i-kiwi"),     # 8  rank 9: in the window -> negative
    ("image", "lime", "i-lime"),     # 9  rank 10: below the window -> not a negative
]


def _mine(query_angle: float = 0.0, **cfg: object):  # type: ignore[no-untyped-def]
    pool = _unit([0.1 * (i + 1) for i in range(len(POOL))])
    q = _unit([query_angle])
    return mine_hard_negatives(
        q, pool, positives=[4], positive_ids=["i-pos-copy"], concepts=["apple"],
        pool_ids=[p[2] for p in POOL], pool_concepts=[p[1] for p in POOL], pool_modalities=[p[0] for p in POOL],
        cfg=MiningConfig(**cfg))  # type: ignore[arg-type]


def test_wrong_modality_above_positive_and_right_modality_window() -> None:
    mined = _mine(top_k=10, right_ranks=(8, 9))
    assert mined.negatives == [[0, 1, 7, 8]]
    assert mined.kinds == [["wrong-modality", "wrong-modality", "right-modality", "right-modality"]]
    # rank of the best positive: #3 carries the positive's id, so it counts as the positive (rank 4)
    assert mined.positive_rank == [4]
    assert mined.stats["wrong_modality_negatives"] == 2 and mined.stats["right_modality_negatives"] == 2
    assert mined.stats["queries_with_wrong_modality_above_positive"] == 1


def test_false_negatives_are_never_mined_whatever_the_window() -> None:
    mined = _mine(top_k=10, right_ranks=(1, 10), max_wrong=100)
    negs = set(mined.negatives[0])
    assert not negs & {2, 3, 4}  # same concept + same modality, same id, the positive itself
    assert negs == {0, 1, 6, 7, 8, 9}  # 5 is text below the positive: not a negative


def test_default_window_is_the_last_five_of_top_k() -> None:
    assert MiningConfig(top_k=50).window() == (46, 50)
    assert MiningConfig(top_k=3).window() == (1, 3)
    mined = _mine(top_k=9)  # window ranks 5-9 -> right-modality 6 (rank 7), 7, 8 (the positive at 5 is excluded)
    assert mined.negatives == [[0, 1, 6, 7, 8]]
    with pytest.raises(ValueError, match="right_ranks"):
        MiningConfig(right_ranks=(5, 2)).window()


def test_positive_below_top_k_makes_every_wrong_modality_candidate_a_negative() -> None:
    mined = _mine(top_k=3, right_ranks=(3, 3), max_wrong=5)  # top 3: text, text, false-negative image
    assert mined.positive_rank == [None]
    assert mined.negatives == [[0, 1]]
    capped = _mine(top_k=3, right_ranks=(3, 3), max_wrong=1)
    assert capped.negatives == [[0]]  # the highest ranked first


def test_ties_are_broken_by_pool_order_and_queries_are_independent() -> None:
    pool = np.ones((4, 2), dtype=np.float32) / np.sqrt(2)  # every candidate ties
    q = np.ones((2, 2), dtype=np.float32) / np.sqrt(2)
    kw = dict(positives=[3, 2], positive_ids=["d3", "d2"], concepts=[None, None], pool_ids=["d0", "d1", "d2", "d3"],
              pool_concepts=[None] * 4, pool_modalities=["text", "text", "image", "image"],
              cfg=MiningConfig(top_k=4, right_ranks=(3, 4)))
    a = mine_hard_negatives(q, pool, **kw)  # type: ignore[arg-type]
    b = mine_hard_negatives(q, pool, **kw)  # type: ignore[arg-type]
    assert a.negatives == b.negatives
    # query 0: order 0,1,2,3; positive 3 at rank 4; texts 0,1 above it; image 2 at rank 3 in the window
    assert a.negatives[0] == [0, 1, 2] and a.positive_rank[0] == 4
    # query 1: positive 2 at rank 3; image 3 at rank 4 in the window
    assert a.negatives[1] == [0, 1, 3] and a.positive_rank[1] == 3


def test_shape_mismatches_are_refused() -> None:
    pool = _unit([0.1, 0.2])
    with pytest.raises(ValueError, match="per query"):
        mine_hard_negatives(_unit([0.0]), pool, positives=[0, 1], positive_ids=["a"], concepts=[None],
                            pool_ids=["a", "b"], pool_concepts=[None, None], pool_modalities=["text", "image"])
    with pytest.raises(ValueError, match="per pool document"):
        mine_hard_negatives(_unit([0.0]), pool, positives=[0], positive_ids=["a"], concepts=[None],
                            pool_ids=["a"], pool_concepts=[None, None], pool_modalities=["text", "image"])
