"""Before/after table for the offline default reranker on the evaluation sets (first stage vs reranked).

    python benchmarks/bench_rerank.py                          # mmembed-mini + default reranker, fetch_k 30
    python benchmarks/bench_rerank.py --ablations              # also without each signal, and with image views
    python benchmarks/bench_rerank.py --limit 100 --datasets python-faq

For every query the first stage (exact dense search with the encoder) ranks the pool; the reranker reorders
its top ``fetch_k`` (30 = what ``mmembed.retrieve`` fetches for k=10) exactly as the pipeline does, with the
first-stage scores handed over. Metrics are the evaluation package's (R@k = success@k, tie-aware). Beside
each mean, the table gives how many queries got better / worse in nDCG@10 and a paired bootstrap 95%
interval of the nDCG@10 change, so a gain can be told from noise. The rerankers are never fitted to these
sets. Writes ``benchmarks/results/rerank.json`` with the machine, date and exact command.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import load_average, run_header, update_results, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SETS = ("tuxpaint", "python-faq")
SHOWN = ("R@1", "R@5", "R@10", "nDCG@10")


def paired_bootstrap(delta: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of per-query differences (resampling queries)."""
    rng = np.random.default_rng(seed)
    means = delta[rng.integers(0, len(delta), size=(n, len(delta)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def rerank_subset(subset: Any, index: Any, rerankers: dict[str, Any], fetch_k: int) -> dict[str, Any]:
    """Per-query metrics of the first stage and of each reranker on one subset."""
    from mmembed.eval.metrics import per_query_metrics
    from mmembed.eval.runner import _top_candidates, rerank_scores

    docs = index.documents(subset.pool)
    queries = index.queries(subset, subset.task)
    scores = queries @ docs.T
    top = _top_candidates(scores, fetch_k)
    out: dict[str, Any] = {"first stage": per_query_metrics(scores, subset.relevant)}
    for label, rr in rerankers.items():
        t0 = time.perf_counter()
        lifted = np.empty(scores.shape, dtype=np.float64)
        for q in range(len(subset)):
            cands = top[q]
            values = rr.score(subset.queries[q], [subset.pool.items[j] for j in cands], task=subset.task,
                              first_stage=scores[q, cands].tolist())
            lifted[q] = rerank_scores(scores[q], cands, values)
        out[label] = per_query_metrics(lifted, subset.relevant)
        out[label + ":seconds"] = time.perf_counter() - t0
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = ["set", "subset", "n", "system", *SHOWN, "dnDCG@10 95% CI", "better/worse"]
    body = []
    for r in rows:
        body.append([r["dataset"], r["subset"], str(r["queries"]), r["system"],
                     *[f"{r['metrics'][m]:.3f}" + (f" ({r['delta'][m]:+.3f})" if r.get("delta") else "")
                       for m in SHOWN],
                     f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]" if r.get("ci") else "",
                     f"{r['better']}/{r['worse']}" if r.get("ci") else ""])
    return text_table(head, body)


def text_table(head: list[str], body: list[list[str]]) -> str:
    """A fixed-width plain-text table (columns left-aligned, a dashed rule under the header)."""
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="default", help="first-stage encoder name or directory")
    ap.add_argument("--fetch-k", type=int, default=30, help="candidates per query given to the reranker")
    ap.add_argument("--datasets", nargs="+", default=list(DEFAULT_SETS))
    ap.add_argument("--limit", type=int, default=None, help="fixed random sample per set (quick runs)")
    ap.add_argument("--ablations", action="store_true", help="also run the default reranker without each signal, and with image views")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS / "rerank.json")
    ap.add_argument("--update", action="store_true",
                    help="replace only the --datasets rows in the existing --out file (recorded under 'updates')")
    args = ap.parse_args(argv)

    import mmembed
    from mmembed.eval import DenseIndex, load_dataset
    from mmembed.rerankers.fusion import ALL_VIEWS, FusionReranker

    started = time.perf_counter()
    load_start = load_average()
    encoder = mmembed.load_encoder(args.encoder)
    default = mmembed.load_reranker("default", encoder=encoder)
    rerankers: dict[str, Any] = {"default reranker": default}
    if args.ablations:  # the same reranker with one part removed (or, for views, added)
        second = default.second
        rerankers["without second model"] = FusionReranker(encoder, second=None, weights={"second": 0.0})
        rerankers["without BM25"] = FusionReranker(encoder, second=second, weights={"lexical": 0.0})
        rerankers["with image views"] = FusionReranker(encoder, second=second, views=ALL_VIEWS)
    index = DenseIndex(encoder, batch_size=args.batch_size)
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        data = load_dataset(name, limit=args.limit)
        print(f"== {data.name}: {data.description} [{data.source}]", file=sys.stderr, flush=True)
        for subset in data.subsets:
            per = rerank_subset(subset, index, rerankers, args.fetch_k)
            base = per["first stage"]
            common = {"dataset": data.name, "subset": subset.name, "queries": len(subset),
                      "documents": len(subset.pool), "task": subset.task}
            rows.append({**common, "system": f"first stage ({encoder.name})",
                         "metrics": {m: float(v.mean()) for m, v in base.items()}})
            for label, rr in rerankers.items():
                after = per[label]
                delta = after["nDCG@10"] - base["nDCG@10"]
                rows.append({**common, "system": f"+ {label}", "reranker": rr.name,
                             "metrics": {m: float(v.mean()) for m, v in after.items()},
                             "delta": {m: float((after[m] - base[m]).mean()) for m in after},
                             "ci": paired_bootstrap(delta), "better": int((delta > 1e-9).sum()),
                             "worse": int((delta < -1e-9).sum()), "seconds": round(per[label + ":seconds"], 1)})
            print(table(rows[-1 - len(rerankers):]), file=sys.stderr, flush=True)
    print(table(rows))
    payload = {
        **run_header("rerank", load_start=load_start),
        "mmembed": mmembed.__version__,
        "encoder": encoder.name,
        "reranker": default.name,
        "fetch_k": args.fetch_k,
        "limit": args.limit,
        "seconds": round(time.perf_counter() - started, 1),
        "results": rows,
    }
    if args.update:
        payload = update_results(args.out, payload, {r["dataset"] for r in rows},
                                 lambda old, new: [(old, new, "results")])
    print(f"wrote {write_json(args.out, payload)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
