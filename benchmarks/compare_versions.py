"""Paired comparison of two encoders on the evaluation sets: which sets got better or worse beyond noise.

    python benchmarks/compare_versions.py --threads 1          # mmembed-mini-v2 -> mmembed-mini, every set
    python benchmarks/compare_versions.py --limit 40 --datasets tuxpaint python-faq   # a quick look

Both encoders are scored on the same queries of each (dataset, subset) exactly as ``mmembed.eval.evaluate``
does (exact dense search over the subset's pool, each subset's queries asked with its own task, the
evaluation package's tie-aware per-query metrics; ModAcc@1 on the mixed pool as well). The per-query
difference ``new - old`` of nDCG@10 and of R@10 is then resampled over queries (the paired bootstrap of
``bench_rerank.py``: 2000 resamples, seed 0) for a 95% interval of the mean change. Verdict per subset, on
nDCG@10: "better" when the interval is above 0, "worse" when below, else "no change beyond noise".

Sets: ``tuxpaint`` with the per-stamp subset, ``tuxpaint-xling`` in the languages of the towers' cards
(``mmembed.train.mini.CROSS_LINGUAL``), ``tuxpaint-mixed``, ``tuxpaint-captioned`` (image + text documents
among text documents, asked without an instruction: the check a model switch once failed), ``fashion-mnist``
(both colourings), ``emoji-composed`` and ``python-faq``: every set ``bench_quality.py`` reports. The two encoders share the
frozen text tower (:func:`mmembed.train.modality.share_text_tower`), so text is embedded once. Writes
``benchmarks/results/versions.json`` (with the machine, date, load and exact command), which
``scripts/render_figures.py`` renders as the ``versions.paired`` block.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import RESULTS, load_average, run_header, write_json  # noqa: E402
from bench_rerank import paired_bootstrap, text_table  # noqa: E402

DEFAULT_SETS = ("tuxpaint", "tuxpaint-xling", "tuxpaint-mixed", "tuxpaint-captioned", "fashion-mnist",
                "fashion-mnist-inverted", "emoji-composed", "python-faq")
#: the metrics given a paired interval; the verdict is read on the first
COMPARED = ("nDCG@10", "R@10")
#: per-query differences smaller than this are float dust, counted as no change
EPS = 1e-9


def build_set(name: str, limit: int | None) -> Any:
    """The evaluation set ``name`` as the model cards score it (per-stamp subset, the cards' languages)."""
    from mmembed.eval.datasets import load_dataset, tuxpaint, tuxpaint_xling
    from mmembed.train.mini import CROSS_LINGUAL

    if name == "tuxpaint":
        return tuxpaint(limit=limit, per_stamp=True)
    if name == "tuxpaint-xling":
        return tuxpaint_xling(limit=limit, languages=CROSS_LINGUAL)
    return load_dataset(name, limit=limit)


def subset_per_query(subset: Any, index: Any) -> dict[str, np.ndarray]:
    """Every query's metrics on ``subset`` (as :func:`mmembed.eval.runner.evaluate_dense` computes them, kept
    per query instead of averaged)."""
    from mmembed.eval.metrics import per_query_metrics
    from mmembed.eval.modality import modality_metrics
    from mmembed.eval.runner import _chunks

    docs = index.documents(subset.pool)
    queries = index.queries(subset, subset.task)
    if docs.shape[1] != queries.shape[1]:
        raise RuntimeError(f"query dim {queries.shape[1]} != document dim {docs.shape[1]}")
    parts = []
    for start, stop in _chunks(len(subset), docs.shape[0]):
        scores = queries[start:stop] @ docs.T
        parts.append({**per_query_metrics(scores, subset.relevant[start:stop]),
                      **modality_metrics(scores, subset, start, stop)})
    return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def verdict(lo: float, hi: float) -> str:
    return "better" if lo > 0 else "worse" if hi < 0 else "no change beyond noise"


def paired(old: np.ndarray, new: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    """Means, mean change, its paired-bootstrap 95% interval, queries better/worse and the verdict."""
    delta = new - old
    delta = np.where(np.abs(delta) < EPS, 0.0, delta)
    lo, hi = paired_bootstrap(delta, n=resamples, seed=seed)
    return {"old": float(old.mean()), "new": float(new.mean()), "delta": float(delta.mean()),
            "ci": [lo, hi], "better": int((delta > 0).sum()), "worse": int((delta < 0).sum()),
            "verdict": verdict(lo, hi)}


def compare_subset(dataset: str, subset: Any, old: dict[str, np.ndarray], new: dict[str, np.ndarray],
                   resamples: int, seed: int) -> dict[str, Any]:
    shown = [m for m in ("ModAcc@1", *COMPARED) if m in old and m in new]
    comp = {m: paired(old[m], new[m], resamples, seed) for m in shown}
    main = comp[COMPARED[0]]
    return {"dataset": dataset, "subset": subset.name, "task": subset.task, "queries": len(subset),
            "documents": len(subset.pool),
            "metrics_old": {m: float(v.mean()) for m, v in old.items()},
            "metrics_new": {m: float(v.mean()) for m, v in new.items()},
            "paired": comp, "better": main["better"], "worse": main["worse"], "verdict": main["verdict"]}


def table(rows: list[dict[str, Any]]) -> str:
    head = ["set", "subset", "n", "nDCG@10 old -> new", "delta [95% CI]", "R@10 delta [95% CI]", "better/worse",
            "verdict"]

    def ci(p: dict[str, Any]) -> str:
        return f"{p['delta']:+.3f} [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}]"

    body = [[r["dataset"], r["subset"], str(r["queries"]),
             f"{r['paired']['nDCG@10']['old']:.3f} -> {r['paired']['nDCG@10']['new']:.3f}",
             ci(r["paired"]["nDCG@10"]), ci(r["paired"]["R@10"]), f"{r['better']}/{r['worse']}", r["verdict"]]
            for r in rows]
    return text_table(head, body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="mmembed-mini-v2", help="the previous encoder (name for mmembed.load_encoder)")
    ap.add_argument("--new", default="mmembed-mini-v3", help="the new encoder (name for mmembed.load_encoder)")
    ap.add_argument("--datasets", nargs="+", default=list(DEFAULT_SETS), help="sets to compare (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="fixed random sample per set (quick runs)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument("--out", type=Path, default=RESULTS / "versions.json")
    args = ap.parse_args(argv)

    load_start = load_average()
    started = time.perf_counter()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import mmembed
    from mmembed.eval import DenseIndex
    from mmembed.train.mini import CROSS_LINGUAL
    from mmembed.train.modality import share_text_tower

    old_enc = mmembed.load_encoder(args.old, device="cpu")
    new_enc = mmembed.load_encoder(args.new, device="cpu")
    share_text_tower(new_enc, old_enc)  # one frozen text tower (and its memo): text is embedded once
    indexes = {"old": DenseIndex(old_enc, batch_size=args.batch_size),
               "new": DenseIndex(new_enc, batch_size=args.batch_size)}
    rows: list[dict[str, Any]] = []
    sets: list[dict[str, Any]] = []
    for name in args.datasets:
        t0 = time.perf_counter()
        data = build_set(name, args.limit)
        print(f"== {data.name}: {data.description} [{data.source}]", file=sys.stderr, flush=True)
        seconds = {"old": 0.0, "new": 0.0}
        for subset in data.subsets:
            per = {}
            for side, index in indexes.items():
                t1 = time.perf_counter()
                per[side] = subset_per_query(subset, index)
                seconds[side] += time.perf_counter() - t1
            rows.append(compare_subset(data.name, subset, per["old"], per["new"], args.resamples, args.seed))
        print(table(rows[-len(data.subsets):]), file=sys.stderr, flush=True)
        sets.append({"name": data.name, "description": data.description, "source": data.source,
                     "seconds": round(time.perf_counter() - t0, 1),
                     "seconds_old": round(seconds["old"], 1), "seconds_new": round(seconds["new"], 1)})
    print(table(rows))
    payload = {
        **run_header("versions", load_start=load_start),
        "mmembed": mmembed.__version__,
        "old": {"name": args.old, "encoder": old_enc.name},
        "new": {"name": args.new, "encoder": new_enc.name},
        "threads": args.threads,
        "batch_size": args.batch_size,
        "limit": args.limit,
        "bootstrap": {"resamples": args.resamples, "seed": args.seed, "interval": 0.95,
                      "method": "paired: queries resampled with replacement, percentile interval of the mean "
                                "per-query change new - old"},
        "cross_lingual_languages": list(CROSS_LINGUAL),
        "datasets": sets,
        "seconds": round(time.perf_counter() - started, 1),
        "metric_notes": "R@k is success@k; ties count as their expectation over random order; exact dense search in "
                        "numpy, each subset's queries with its own task; verdict on nDCG@10: better if the 95% "
                        "interval is above 0, worse if below, else no change beyond noise.",
        "results": rows,
    }
    print(f"wrote {write_json(args.out, payload)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
