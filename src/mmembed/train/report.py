"""Before/after evaluation of a fine-tuned encoder with the ``mmembed eval`` harness (one table, Markdown)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Columns of the before/after table.
COLUMNS = ("ModAcc@1", "R@1", "R@10", "MRR@10")


def evaluate_sets(encoder: Any, datasets: Sequence[Any], *, limit: int | None = None, batch_size: int = 64,
                  uninstructed: Sequence[str] = ()) -> list[Any]:
    """Run the eval harness on ``datasets`` (names for :func:`mmembed.eval.datasets.load_dataset`, or built
    :class:`~mmembed.eval.datasets.EvalDataset` s) with
    ``encoder`` (an Encoder, name or path); returns the dense rows (no baselines).

    Datasets named in ``uninstructed`` (by the name given, or a built dataset by its own name) are scored a
    second time with every query asked *without* an
    instruction (subset names get `` (no instruction)``): fine-tuning must not break plain search."""
    from dataclasses import replace

    from ..eval.datasets import load_dataset
    from ..eval.runner import DenseIndex, evaluate, resolve_encoder

    enc = resolve_encoder(encoder)
    index = DenseIndex(enc, batch_size=batch_size)
    rows = []
    for spec in datasets:
        ds = load_dataset(spec, limit=limit) if isinstance(spec, str) else spec
        rows += evaluate(ds, enc, baselines=False, index=index)
        if (spec if isinstance(spec, str) else ds.name) in uninstructed:
            plain = replace(ds, subsets=[replace(s, name=f"{s.name} (no instruction)", task=None)
                                         for s in ds.subsets])
            rows += evaluate(plain, enc, baselines=False, index=index)
    return rows


def before_after_table(before: Sequence[Any], after: Sequence[Any], *, before_label: str = "before",
                       after_label: str = "after") -> str:
    """A Markdown table: one line per (dataset, subset), before -> after for each metric, the better value of
    each pair in bold (every metric here is higher-is-better)."""
    def key(r: Any) -> tuple[str, str]:
        return (r.dataset, r.subset)

    after_by = {key(r): r for r in after}
    cols = [c for c in COLUMNS if any(c in r.metrics for r in [*before, *after])]
    head = "| dataset | subset | queries | docs | " + " | ".join(
        f"{c} {before_label}" + f" | {c} {after_label}" for c in cols) + " |"
    sep = "|---|---|---|---|" + "---|---|" * len(cols)
    lines = [head, sep]
    for b in before:
        a = after_by.get(key(b))
        cells = []
        for c in cols:
            bv = b.metrics.get(c)
            av = a.metrics.get(c) if a is not None else None
            bs, as_ = ("-" if bv is None else f"{bv:.3f}"), ("-" if av is None else f"{av:.3f}")
            if bv is not None and av is not None and bs != as_:  # the better of the two in bold
                bs, as_ = (f"**{bs}**", as_) if bv > av else (bs, f"**{as_}**")
            cells += [bs, as_]
        lines.append(f"| {b.dataset} | {b.subset} | {b.queries} | {b.documents} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_evaluation(out: str | Path, before: Sequence[Any], after: Sequence[Any], *, base_label: str,
                   note: str = "") -> str:
    """Append the before/after table to the model card and the training summary in ``out``; return it."""
    from .cards import CARD_FILE, finetune_card
    from .finetune import SUMMARY_FILE

    out = Path(out)
    table = before_after_table(before, after, before_label=f"({base_label})", after_label="(fine-tuned)")
    summary_path = out / SUMMARY_FILE
    summary = json.loads(summary_path.read_text())
    summary["evaluation"] = {"before": [r.as_dict() for r in before], "after": [r.as_dict() for r in after]}
    summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    text = (note.strip() + "\n\n" if note.strip() else "") + table
    (out / CARD_FILE).write_text(finetune_card(summary, evaluation=text))
    return table


__all__ = ["COLUMNS", "add_evaluation", "before_after_table", "evaluate_sets"]
