"""The levers tried for mmembed-mini-v3's image tower, measured on the development set only.

    python benchmarks/levers_v3.py --baseline "v2 towers=mmembed-mini-v2-towers" \
        --run "v2 data, +3 epochs=RUN1" --run "v3 data, +3 epochs=RUN2" ...

Each ``RUN`` is an output directory of ``python -m mmembed.train.mini ... --dev``: its
``training_summary.json`` holds the command, the data recipe, the starting model, the training time and the
``openclipart-dev`` figures the run measured on itself. Baselines (shipped models, by name) are evaluated
here on the same set. Writes ``benchmarks/results/levers_v3.json``; ``scripts/render_figures.py`` renders
the table in the model card. Tux Paint is never looked at here: the levers were chosen on
``openclipart-dev`` (held-back Open Clip Art concepts), and Tux Paint is measured once, on the shipped model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import RESULTS, load_average, run_header, write_json  # noqa: E402


def _pair(text: str) -> tuple[str, str]:
    label, sep, value = text.partition("=")
    if not sep or not label or not value:
        raise argparse.ArgumentTypeError(f"expected LABEL=VALUE, got {text!r}")
    return label.strip(), value.strip()


def run_row(label: str, run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / "training_summary.json").read_text(encoding="utf-8"))
    train = summary["train"]
    if not summary.get("dev"):
        raise SystemExit(f"{run_dir}: the run measured no development figures (train it with --dev)")
    batch = 256
    seconds = float(train["seconds"])
    return {"label": label, "kind": "run", "command": summary["command"], "data": summary.get("data", "v2"),
            "init": summary.get("init"), "images": summary["n_pairs"], "concepts": summary["n_concepts"],
            "steps": train["steps"], "epochs": round(float(train["epochs"]), 2),
            "train_minutes": round(seconds / 60, 1), "images_per_second": round(train["steps"] * batch / seconds, 1),
            "dev": summary["dev"], "run": summary.get("run", {})}


def baseline_row(label: str, model: str) -> dict[str, Any]:
    import mmembed
    from mmembed.train.mini import evaluate_dev

    enc = mmembed.load_encoder(model, device="cpu")
    return {"label": label, "kind": "baseline", "model": model, "encoder": enc.name, "dev": evaluate_dev(enc)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=_pair, action="append", default=[], metavar="LABEL=MODEL")
    ap.add_argument("--run", type=_pair, action="append", default=[], metavar="LABEL=DIR")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "levers_v3.json")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    load_start = load_average()
    rows = [baseline_row(label, model) for label, model in args.baseline]
    rows += [run_row(label, Path(d)) for label, d in args.run]
    payload = run_header("levers_v3", load_start=load_start)
    payload.update(torch_threads=args.threads, dataset="openclipart-dev", rows=rows)
    write_json(args.out, payload)
    for r in rows:
        d = r["dev"]
        print(f"{r['label']:40} text->image R@10 {d['text->image']['R@10']:.3f} nDCG@10 "
              f"{d['text->image']['nDCG@10']:.3f}  image->text R@10 {d['image->text']['R@10']:.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
