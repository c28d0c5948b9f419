"""The before/after table of ``mmembed train --eval`` and the modality recipe's small helpers."""

from __future__ import annotations

import numpy as np

from mmembed.eval.runner import Result
from mmembed.train.modality import TASK_FAMILIES, sentence_form
from mmembed.instructions import get_task
from mmembed.train.report import before_after_table


def _row(subset: str, **metrics: float) -> Result:
    return Result(dataset="d", subset=subset, system="s", metrics=metrics, queries=3, documents=7)


def test_before_after_table_pairs_rows_and_shows_only_known_columns() -> None:
    before = [_row("t2i", **{"ModAcc@1": 0.0, "R@1": 0.1, "R@10": 0.2, "MRR@10": 0.15, "nDCG@10": 0.3}),
              _row("plain", **{"R@1": 0.5, "R@10": 0.9, "MRR@10": 0.6})]
    after = [_row("t2i", **{"ModAcc@1": 1.0, "R@1": 0.2, "R@10": 0.3, "MRR@10": 0.25}),
             _row("plain", **{"R@1": 0.4, "R@10": 0.9, "MRR@10": 0.55})]
    table = before_after_table(before, after, before_label="(base)", after_label="(ft)").splitlines()
    assert table[0].startswith("| dataset | subset | queries | docs | ModAcc@1 (base) | ModAcc@1 (ft) | R@1 (base)")
    assert "nDCG" not in table[0]
    assert table[2] == "| d | t2i | 3 | 7 | 0.000 | **1.000** | 0.100 | **0.200** | 0.200 | **0.300** | 0.150 | **0.250** |"
    # the better value is bold, whichever side it is on; a tie is bold on neither
    assert table[3] == "| d | plain | 3 | 7 | - | - | **0.500** | 0.400 | 0.900 | 0.900 | **0.600** | 0.550 |"


def test_recipe_helpers() -> None:
    rng = np.random.default_rng(0)
    forms = {sentence_form("apple", rng) for _ in range(50)}
    assert forms == {"An apple.", "The apple.", "Apple.", "A picture of apple."}
    assert {sentence_form("frog", rng) for _ in range(50)} >= {"A frog."}
    for kind, family in TASK_FAMILIES.items():  # every family member is a registered task of that kind
        q, t = kind.split("->")
        for name in family:
            task = get_task(name)
            assert (task.query_modality, task.target_modality) == (q, t)
