"""Choose the default reranker's dense/second balance on the Open Clip Art development set (never on an evaluation set).

    python benchmarks/choose_fusion_weights.py                  # every held-back drawing
    python benchmarks/choose_fusion_weights.py --limit 80       # a quick look on a fixed sample

The first stage is ``--encoder`` (default: mmembed-mini) with exact dense search; the reranker is the default
:class:`~mmembed.rerankers.fusion.FusionReranker` (``mmembed.load_reranker("default")``, whose second opinion
for mmembed-mini is the bundled ``mmembed-mini-minilm``) reordering each query's top ``fetch_k`` exactly as the
pipeline does (first-stage scores handed over). ``fetch_k`` defaults to what ``mmembed.retrieve`` fetches for
k=10 (:func:`mmembed.pipeline.default_fetch_k`). The grid: dense share ``d`` in 0.0, 0.1, ... 0.8 with
``weights={"dense": d, "second": 1 - d, "lexical": 0.4}``, plus the current :data:`DEFAULT_WEIGHTS`. The
constructor refuses a dense weight of 0 (dense is every other signal's fallback), so ``d = 0`` runs with
dense ``1e-6``: the second model alone, dense only breaking its exact ties.

Cheap grid: one pass with the default weights runs the real reranker and records, per query, the three raw
signals it computed (first-stage cosine, second model's cosine, BM25; NaN where a signal does not apply); each
grid point then re-runs only ``FusionReranker``'s own fusion step (``_score_batch``, normalisation, fallbacks
and all) over those recorded signals, so no model runs again. The replay at the default weights is checked to
reproduce the real reranker's scores for every query.

On openclipart-dev the lexical signal cannot act: in ``text->image`` the candidates are drawings without
text, and in ``image->text`` the query is an image without text; the script counts, per subset, the queries
where each signal applied (``signals`` in the JSON). Only ``dense : second`` then matters, so the default
(0.2 : 0.4) sits at an effective dense share of 1/3 between grid points.

The choice maximises the mean nDCG@10 over the two subsets; rows within ``--tie`` (0.002) of the best count as
tied and the tie goes to the current default, else to the effective dense share nearest the default's.
Writes ``benchmarks/results/fusion_weights.json`` (per grid point and subset nDCG@10, R@1, R@10 and MRR@10,
the first-stage row, the choice, and the run header).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import load_average, run_header, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "fusion_weights.json"
DATASET = "openclipart-dev"
SUBSETS = ("text->image", "image->text")
SHOWN = ("nDCG@10", "R@1", "R@10", "MRR@10")
GRID = tuple(round(0.1 * i, 1) for i in range(9))  # dense share 0.0 .. 0.8
LEXICAL = 0.4
ZERO_DENSE = 1e-6  # FusionReranker requires dense > 0


def grid_weights(d: float) -> dict[str, float]:
    return {"dense": d if d > 0 else ZERO_DENSE, "second": round(1.0 - d, 6), "lexical": LEXICAL}


def dense_share(weights: Mapping[str, float]) -> float:
    """dense / (dense + second): all that matters where lexical does not apply."""
    return weights["dense"] / (weights["dense"] + weights["second"])


def make_classes() -> tuple[type, type]:
    from mmembed.rerankers.fusion import FusionReranker

    class Recording(FusionReranker):
        """The real reranker, keeping each query's raw signals under ``self.key``."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.key: Any = None
            self.signals: dict[Any, dict[str, np.ndarray | None]] = {}

        def _slot(self) -> dict[str, np.ndarray | None]:
            return self.signals.setdefault(self.key, {"dense": None, "second": None, "lexical": None})

        def dense_scores(self, query, candidates, instruction):  # type: ignore[no-untyped-def]
            out = super().dense_scores(query, candidates, instruction)
            self._slot()["dense"] = np.array(out, dtype=np.float64)
            return out

        def second_scores(self, query, candidates, instruction):  # type: ignore[no-untyped-def]
            out = super().second_scores(query, candidates, instruction)
            self._slot()["second"] = np.array(out, dtype=np.float64)
            return out

        def lexical_scores(self, query, candidates):  # type: ignore[no-untyped-def]
            out = super().lexical_scores(query, candidates)
            self._slot()["lexical"] = np.array(out, dtype=np.float64)
            return out

    class Replay(FusionReranker):
        """FusionReranker's fusion step over recorded raw signals (no model runs)."""

        def __init__(self, *args: Any, signals: Mapping[Any, Mapping[str, np.ndarray | None]], **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.recorded = signals
            self.key: Any = None

        def _get(self, name: str, n: int) -> np.ndarray:
            value = self.recorded[self.key][name]
            if value is None:
                raise RuntimeError(f"signal {name!r} was not recorded for {self.key!r}")
            if len(value) != n:
                raise RuntimeError(f"recorded {name!r} has {len(value)} values for {n} candidates")
            return value.copy()

        def dense_scores(self, query, candidates, instruction):  # type: ignore[no-untyped-def]
            return self._get("dense", len(candidates))

        def second_scores(self, query, candidates, instruction):  # type: ignore[no-untyped-def]
            return self._get("second", len(candidates))

        def lexical_scores(self, query, candidates):  # type: ignore[no-untyped-def]
            return self._get("lexical", len(candidates))

        def fuse(self, key: Any, query: Any, n: int) -> list[float]:
            self.key = key
            return list(self._score_batch(query, [None] * n, instruction=None))  # type: ignore[list-item]

    return Recording, Replay


def informative(raw: np.ndarray | None) -> bool:
    """Whether the fusion step uses this signal for the query (as FusionReranker decides it)."""
    if raw is None:
        return False
    ok = ~np.isnan(raw)
    return bool(ok.sum() >= 2 and float(np.nanmax(raw)) != float(np.nanmin(raw)))


def mean_metrics(per: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {m: round(float(per[m].mean()), 6) for m in SHOWN}


def choose(rows: Sequence[dict[str, Any]], tie: float) -> dict[str, Any]:
    """The row with the best mean nDCG@10; near-ties (within ``tie``) go to the default, else to the effective
    dense share nearest the default's."""
    default = next(r for r in rows if r["is_default"])
    best = max(r["mean_nDCG@10"] for r in rows)
    tied = [r for r in rows if r["mean_nDCG@10"] >= best - tie]
    if default in tied:
        return default
    return min(tied, key=lambda r: (abs(r["effective_dense_share"] - default["effective_dense_share"]),
                                    -r["mean_nDCG@10"]))


def table(first: Mapping[str, Mapping[str, float]], rows: Sequence[dict[str, Any]], chosen: dict[str, Any]) -> str:
    head = ["row", "weights d/s/l", "eff. d", *(f"{s} {m}" for s in SUBSETS for m in ("nDCG@10", "R@1", "R@10")),
            "mean nDCG@10"]
    body = [["first stage", "-", "-", *(f"{first[s][m]:.3f}" for s in SUBSETS for m in ("nDCG@10", "R@1", "R@10")),
             f"{np.mean([first[s]['nDCG@10'] for s in SUBSETS]):.3f}"]]
    for r in rows:
        w = r["weights"]
        label = ("default" if r["is_default"] else f"d={r['dense_share']:.1f}") + (" *" if r is chosen else "")
        body.append([label, f"{w['dense']:g}/{w['second']:g}/{w['lexical']:g}", f"{r['effective_dense_share']:.3f}",
                     *(f"{r['subsets'][s][m]:.3f}" for s in SUBSETS for m in ("nDCG@10", "R@1", "R@10")),
                     f"{r['mean_nDCG@10']:.4f}"])
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) for i in range(len(head))]
    lines = ["  ".join(h.rjust(w) if i > 1 else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths))),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(b, widths))) for b in body]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="default", help="first-stage encoder (default: mmembed-mini)")
    ap.add_argument("--second", default=None,
                    help="second opinion instead of the default reranker's: a mini model folder bundled in the "
                         "package (mmembed-mini-minilm-v1) or a model directory")
    ap.add_argument("--k", type=int, default=10, help="results per query; fetch_k defaults from it as in retrieve()")
    ap.add_argument("--fetch-k", type=int, default=None,
                    help="candidates per query given to the reranker (default: mmembed.pipeline.default_fetch_k(k))")
    ap.add_argument("--limit", type=int, default=None, help="fixed random sample of that many drawings")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    ap.add_argument("--tie", type=float, default=0.002, help="mean nDCG@10 difference counted as a tie")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    import mmembed
    from mmembed.eval.datasets import openclipart_dev
    from mmembed.eval.metrics import per_query_metrics
    from mmembed.eval.runner import DenseIndex, _top_candidates, rerank_scores
    from mmembed.inputs import coerce
    from mmembed.pipeline import default_fetch_k
    from mmembed.rerankers.fusion import DEFAULT_WEIGHTS

    started = time.perf_counter()
    load_start = load_average()
    fetch_k = args.fetch_k if args.fetch_k is not None else default_fetch_k(args.k)
    encoder = mmembed.load_encoder(args.encoder)
    default = mmembed.load_reranker("default", encoder=encoder)
    Recording, Replay = make_classes()
    second = default.second
    if args.second:
        from mmembed.encoders.mini import bundled_folder, load_mini

        second = load_mini(bundled_folder(args.second) or args.second, image_policy=encoder.image_policy)
        default = type(default)(encoder, second=second, weights=DEFAULT_WEIGHTS)  # the checks below compare to it
    recorder = Recording(encoder, second=second, weights=DEFAULT_WEIGHTS)
    if recorder.name != default.name:
        raise SystemExit(f"the recording reranker {recorder.name} differs from the default {default.name}")
    points: list[tuple[float | None, dict[str, float]]] = [(d, grid_weights(d)) for d in GRID]
    points.append((None, dict(DEFAULT_WEIGHTS)))
    points.sort(key=lambda p: dense_share(p[1]))
    replays = [Replay(encoder, second=second, weights=w, signals=recorder.signals) for _, w in points]

    data = openclipart_dev(limit=args.limit, seed=args.seed)
    print(f"== {data.name}: {data.description} [{data.source}]", file=sys.stderr, flush=True)
    index = DenseIndex(encoder, batch_size=args.batch_size)
    first: dict[str, dict[str, float]] = {}
    per_point: list[dict[str, dict[str, float]]] = [{} for _ in points]
    signals: dict[str, dict[str, int]] = {}
    subsets_info: list[dict[str, Any]] = []
    seconds = {"first stage": 0.0, "reranker (recording pass)": 0.0, "grid replay": 0.0}
    for subset in data.subsets:
        if subset.name not in SUBSETS:
            continue
        t0 = time.perf_counter()
        docs = index.documents(subset.pool)
        queries = index.queries(subset, subset.task)
        scores = queries @ docs.T
        top = _top_candidates(scores, fetch_k)
        first[subset.name] = mean_metrics(per_query_metrics(scores, subset.relevant))
        seconds["first stage"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        recorded_scores: list[list[float]] = []
        q_items = []
        for q in range(len(subset)):
            recorder.key = (subset.name, q)
            cands = [subset.pool.items[j] for j in top[q]]
            first_stage = scores[q, top[q]].tolist()
            recorded_scores.append(recorder.score(subset.queries[q], cands, task=subset.task,
                                                  first_stage=first_stage))
            if q < 3:  # the subclass is the loaded default reranker
                real = default.score(subset.queries[q], cands, task=subset.task, first_stage=first_stage)
                if not np.allclose(real, recorded_scores[-1], rtol=0, atol=1e-9):
                    raise SystemExit(f"{subset.name} query {q}: recording pass differs from the default reranker")
            q_items.append(coerce(subset.queries[q]))
        seconds["reranker (recording pass)"] += time.perf_counter() - t0
        sig = {name: sum(informative(recorder.signals[(subset.name, q)][name]) for q in range(len(subset)))
               for name in ("second", "lexical")}
        signals[subset.name] = {"queries": len(subset), "second_applied": sig["second"],
                                "lexical_applied": sig["lexical"]}

        t0 = time.perf_counter()
        for p, rr in enumerate(replays):
            lifted = np.empty(scores.shape, dtype=np.float64)
            for q in range(len(subset)):
                values = rr.fuse((subset.name, q), q_items[q], len(top[q]))
                if points[p][0] is None and not np.allclose(values, recorded_scores[q], rtol=0, atol=1e-12):
                    raise SystemExit(f"{subset.name} query {q}: the replay at the default weights differs from the "
                                     "reranker")
                lifted[q] = rerank_scores(scores[q], top[q], values)
            per_point[p][subset.name] = mean_metrics(per_query_metrics(lifted, subset.relevant))
        seconds["grid replay"] += time.perf_counter() - t0
        subsets_info.append({"subset": subset.name, "task": subset.task, "queries": len(subset),
                             "documents": len(subset.pool)})
        print(f"{subset.name}: {len(subset)} queries, {len(subset.pool)} documents; second applied to "
              f"{sig['second']}, lexical to {sig['lexical']} queries", file=sys.stderr, flush=True)

    rows = []
    for (d, w), metrics in zip(points, per_point):
        rows.append({"dense_share": d, "weights": w, "effective_dense_share": round(dense_share(w), 6),
                     "is_default": d is None, "subsets": metrics,
                     "mean_nDCG@10": round(float(np.mean([metrics[s]["nDCG@10"] for s in SUBSETS])), 6)})
    chosen = choose(rows, args.tie)
    best = max(rows, key=lambda r: r["mean_nDCG@10"])
    w = chosen["weights"]
    share = chosen["effective_dense_share"]
    keep_lexical = {"dense": round((1 - LEXICAL) * share, 4), "second": round((1 - LEXICAL) * (1 - share), 4),
                    "lexical": LEXICAL}
    print(table(first, rows, chosen))
    print(f"chosen: {'the current default ' if chosen['is_default'] else ''}weights {w} (effective dense share "
          f"{share:.3f}; with lexical keeping its 0.4 of the total: {keep_lexical}); mean nDCG@10 "
          f"{chosen['mean_nDCG@10']:.4f}, best {best['mean_nDCG@10']:.4f}")
    payload = {
        **run_header("fusion_weights", load_start=load_start),
        "mmembed": mmembed.__version__,
        "dataset": DATASET,
        "description": data.description,
        "source": data.source,
        "subsets": subsets_info,
        "encoder": encoder.name,
        "reranker": default.name,
        "second": getattr(second, "name", None),
        "k": args.k,
        "fetch_k": fetch_k,
        "fetch_k_rule": "mmembed.pipeline.default_fetch_k(k) = max(3k, 20), what mmembed.retrieve fetches"
                        if args.fetch_k is None else "given with --fetch-k",
        "limit": args.limit,
        "seed": args.seed,
        "grid": "weights {dense: d, second: 1 - d, lexical: 0.4} for d in 0.0..0.8 (d = 0 runs with dense "
                f"{ZERO_DENSE:g}: the constructor needs dense > 0), plus the current DEFAULT_WEIGHTS",
        "selection": f"max mean nDCG@10 over {', '.join(SUBSETS)}; rows within {args.tie} of the best are tied and "
                     "go to the current default, else to the effective dense share nearest the default's",
        "tie": args.tie,
        "signals": signals,
        "signal_note": "queries of each subset where the signal applied (>= 2 candidates, not constant); where "
                       "lexical never applies only dense : second matters (effective dense share)",
        "seconds": {**{k: round(v, 1) for k, v in seconds.items()}, "total": round(time.perf_counter() - started, 1)},
        "first_stage": first,
        "rows": rows,
        "chosen": {"dense_share": chosen["dense_share"], "weights": w, "is_default": chosen["is_default"],
                   "effective_dense_share": share, "mean_nDCG@10": chosen["mean_nDCG@10"],
                   "weights_keeping_lexical_share": keep_lexical},
        "best": {"dense_share": best["dense_share"], "weights": best["weights"],
                 "mean_nDCG@10": best["mean_nDCG@10"]},
    }
    print(f"wrote {write_json(args.out, payload)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
