"""Ranking metrics: hand-computed expectations (single and multiple positives, ties), a brute-force
reference over every tie order, and bad inputs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmembed.eval.metrics import (
    METRIC_NAMES,
    mrr_at_k,
    ndcg_at_k,
    per_query_metrics,
    recall_at_k,
    retrieval_metrics,
    tie_groups,
)

L3, L4, L5 = 1 / math.log2(3), 1 / math.log2(4), 1 / math.log2(5)  # DCG discounts of ranks 2, 3, 4


def test_single_positive_distinct_scores() -> None:
    scores = [0.9, 0.1, 0.5, 0.3]  # ranking: 0, 2, 3, 1 -> the positive (doc 2) is at rank 2
    assert recall_at_k(scores, [2], 1) == 0.0
    assert recall_at_k(scores, [2], 2) == 1.0
    assert recall_at_k(scores, 2, 5) == 1.0
    assert mrr_at_k(scores, [2]) == pytest.approx(0.5)
    assert ndcg_at_k(scores, [2]) == pytest.approx(L3)


def test_multiple_positives() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    rel = [1, 3]  # ranks 2 and 4
    assert recall_at_k(scores, rel, 1) == 0.0  # success@1: nothing relevant at rank 1
    assert recall_at_k(scores, rel, 2) == 1.0  # one positive is enough for success@k
    assert mrr_at_k(scores, rel) == pytest.approx(0.5)  # first relevant at rank 2
    # DCG = 1/log2(3) + 1/log2(5); ideal = 1 + 1/log2(3)
    assert ndcg_at_k(scores, rel) == pytest.approx((L3 + L5) / (1 + L3))
    assert ndcg_at_k(scores, rel) == pytest.approx(0.650921, abs=1e-6)


def test_perfect_and_absent_rankings() -> None:
    assert ndcg_at_k([3.0, 2.0, 1.0, 0.0], [0, 1]) == pytest.approx(1.0)
    assert mrr_at_k([3.0, 2.0, 1.0, 0.0], [0, 1]) == pytest.approx(1.0)
    scores = np.arange(20, 0, -1, dtype=float)  # doc 19 is ranked last (20th)
    assert recall_at_k(scores, [19], 10) == 0.0
    assert mrr_at_k(scores, [19], 10) == 0.0
    assert ndcg_at_k(scores, [19], 10) == 0.0
    assert mrr_at_k(scores, [19], 20) == pytest.approx(1 / 20)


def test_all_tied_is_exact_chance() -> None:
    scores = [0.0, 0.0, 0.0, 0.0]
    assert recall_at_k(scores, [1], 1) == pytest.approx(0.25)
    assert recall_at_k(scores, [1], 2) == pytest.approx(0.5)
    assert recall_at_k(scores, [1], 5) == pytest.approx(1.0)
    assert mrr_at_k(scores, [1]) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)  # 25/48
    assert ndcg_at_k(scores, [1]) == pytest.approx((1 + L3 + L4 + L5) / 4)


def test_tie_block_straddling_the_cut() -> None:
    scores = [0.9, 0.5, 0.5, 0.5, 0.1]  # doc 0 at rank 1, then a block of three at ranks 2-4
    rel = [2]
    assert recall_at_k(scores, rel, 1) == 0.0
    assert recall_at_k(scores, rel, 2) == pytest.approx(1 / 3)
    assert recall_at_k(scores, rel, 3) == pytest.approx(2 / 3)
    assert recall_at_k(scores, rel, 4) == pytest.approx(1.0)
    assert mrr_at_k(scores, rel) == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)  # 13/36
    assert ndcg_at_k(scores, rel) == pytest.approx((L3 + L4 + L5) / 3)


def test_two_positives_in_a_tie_block() -> None:
    scores = [1.0, 1.0, 1.0, 1.0, 0.0]
    rel = [0, 1]
    assert recall_at_k(scores, rel, 1) == pytest.approx(1 / 2)
    assert recall_at_k(scores, rel, 2) == pytest.approx(1 - (2 / 4) * (1 / 3))  # 5/6
    # first relevant at offset 0 w.p. 1/2, 1 w.p. 1/3, 2 w.p. 1/6 -> 1/2 + 1/6 + 1/18 = 13/18
    assert mrr_at_k(scores, rel) == pytest.approx(13 / 18)
    assert ndcg_at_k(scores, rel) == pytest.approx(0.5 * (1 + L3 + L4 + L5) / (1 + L3))


def test_ties_respect_the_cutoff_depth() -> None:
    # 12 tied docs, one relevant: success@10 = 10/12; MRR@10 averages 1/r over ranks 1..10, /12
    scores = np.zeros(12)
    assert recall_at_k(scores, [5], 10) == pytest.approx(10 / 12)
    assert mrr_at_k(scores, [5], 10) == pytest.approx(sum(1 / r for r in range(1, 11)) / 12)


def test_negative_infinity_scores_are_ranked_last() -> None:
    scores = [-np.inf, 0.2, -np.inf, 0.1]
    assert recall_at_k(scores, [3], 2) == 1.0
    assert recall_at_k(scores, [0], 2) == 0.0
    assert recall_at_k(scores, [0], 3) == pytest.approx(0.5)  # tied with doc 2 at ranks 3-4


def test_matrix_api_averages_queries() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]])
    rel = [[0], [2]]  # query 0: rank 1; query 1: rank 3
    per_q = per_query_metrics(scores, rel)
    assert list(per_q) == list(METRIC_NAMES)
    np.testing.assert_allclose(per_q["R@1"], [1.0, 0.0])
    np.testing.assert_allclose(per_q["MRR@10"], [1.0, 1 / 3])
    means = retrieval_metrics(scores, rel)
    assert means["R@1"] == pytest.approx(0.5)
    assert means["R@5"] == pytest.approx(1.0)
    assert means["MRR@10"] == pytest.approx((1 + 1 / 3) / 2)
    assert means["nDCG@10"] == pytest.approx((1 + L4) / 2)


def test_tie_groups_reports_blocks_reaching_past_depth() -> None:
    groups = tie_groups(np.array([5.0, 3.0, 3.0, 3.0, 1.0]), np.array([2]), depth=2)
    assert groups == [(0, 1, 0), (1, 3, 1)]


@pytest.mark.parametrize(
    "scores, relevant, message",
    [
        ([[0.1, float("nan")]], [[0]], "NaN"),
        ([[0.1, 0.2]], [[]], "no relevant"),
        ([[0.1, 0.2]], [[2]], "outside"),
        ([[0.1, 0.2]], [[-1]], "outside"),
        ([[0.1, 0.2]], [[0], [1]], "2 queries"),
        ([[]], [[0]], "no documents"),
        (np.zeros((1, 2, 2)), [[0]], "matrix"),
    ],
)
def test_bad_inputs_raise_clear_errors(scores: object, relevant: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        per_query_metrics(scores, relevant)  # type: ignore[arg-type]


def test_bad_cutoffs_and_matrix_to_single_query_helpers() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        per_query_metrics([[0.1, 0.2]], [[0]], ks=(0,))
    with pytest.raises(ValueError, match="one query"):
        recall_at_k(np.zeros((2, 3)), [0], 1)


# ---- brute force: the expectation over every order of tied documents ------------------------------------
def _naive(order: list[int], rel: set[int], k: int = 10) -> tuple[float, float, float, float]:
    top = order[:k]
    hit1 = float(order[0] in rel)
    hitk = float(any(d in rel for d in top))
    rr = next((1 / (i + 1) for i, d in enumerate(top) if d in rel), 0.0)
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(top) if d in rel)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(rel), k)))
    return hit1, hitk, rr, dcg / ideal


def _brute_force(scores: list[int], rel: set[int], k: int) -> np.ndarray:
    n = len(scores)
    totals = np.zeros(4)
    count = 0
    for perm in itertools.permutations(range(n)):  # every tie order, each equally likely
        order = sorted(perm, key=lambda d: -scores[d])  # stable sort keeps the permuted order within ties
        totals += _naive(order, rel, k)
        count += 1
    return totals / count


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.integers(0, 2), min_size=1, max_size=6),
    data=st.data(),
)
def test_matches_brute_force_average_over_tie_orders(scores: list[int], data: st.DataObject) -> None:
    n = len(scores)
    rel = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n))
    k = data.draw(st.integers(1, 4))
    expected = _brute_force(scores, rel, k)
    got = per_query_metrics(np.array([scores], dtype=float), [sorted(rel)], ks=(1, k), depth=k)
    assert got["R@1"][0] == pytest.approx(expected[0])
    assert got[f"R@{k}"][0] == pytest.approx(expected[1])
    assert got[f"MRR@{k}"][0] == pytest.approx(expected[2])
    assert got[f"nDCG@{k}"][0] == pytest.approx(expected[3])


@settings(max_examples=40, deadline=None)
@given(scores=st.lists(st.integers(0, 3), min_size=2, max_size=30), seed=st.integers(0, 2**16))
def test_metrics_do_not_depend_on_document_order(scores: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    rel = sorted(set(rng.choice(len(scores), size=min(3, len(scores)), replace=False).tolist()))
    perm = rng.permutation(len(scores))
    inverse = np.argsort(perm)
    a = retrieval_metrics(np.array([scores], dtype=float), [rel])
    b = retrieval_metrics(np.array([scores], dtype=float)[:, perm], [[int(inverse[r]) for r in rel]])
    for name in METRIC_NAMES:
        assert a[name] == pytest.approx(b[name])
