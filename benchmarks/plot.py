"""Render the quality and latency results as PNG figures for the README.

    python benchmarks/plot.py                   # reads benchmarks/results/{quality,latency}.json

The Markdown tables and every figure printed in the README, docs and model cards are rendered by one
mechanism, ``scripts/render_figures.py``; this script only draws the PNGs.

Writes ``benchmarks/results/quality.png`` and ``benchmarks/results/latency.png`` for whichever JSON files
exist. Needs matplotlib (``pip install matplotlib``; it is in the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10")


def _load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _pyplot():  # type: ignore[no-untyped-def]
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("plot.py needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _caption(data: dict[str, Any]) -> str:
    m = data.get("machine", {})
    load = (data.get("load_average") or {}).get("start")
    shown_load = f", load {load[0]:.1f}" if load else ""
    return (f"{data.get('date', '')[:10]} | {m.get('cpu', '?')}, {m.get('cores', '?')} cores{shown_load} | "
            f"{data.get('command', '')}")


def plot_quality(data: dict[str, Any], out: Path, metric: str = "nDCG@10") -> Path:
    plt = _pyplot()
    rows = data["results"]
    groups: list[tuple[str, str]] = []
    systems: list[str] = []
    for r in rows:
        key = (r["dataset"], r["subset"])
        if key not in groups:
            groups.append(key)
        if r["system"] not in systems:
            systems.append(r["system"])
    value = {(r["dataset"], r["subset"], r["system"]): r["metrics"][metric] for r in rows}
    height = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(groups) * max(1.0, len(systems) / 3) + 1.6))
    cmap = plt.get_cmap("tab10")
    for s_i, system in enumerate(systems):
        ys, xs = [], []
        for g_i, (dset, sub) in enumerate(groups):
            v = value.get((dset, sub, system))
            if v is not None:
                ys.append(g_i + s_i * height - 0.4 + height / 2)
                xs.append(v)
        style = {"color": "0.75"} if system == "chance" else {"color": cmap(s_i % 10)}
        ax.barh(ys, xs, height=height * 0.95, label=system, **style)
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels([f"{d} | {s}" for d, s in groups], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{metric} (exact search over each whole pool; R@k is success@k)", fontsize=8)
    ax.set_title(f"Retrieval quality: {data.get('encoder', '')}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.4, -0.05), ncol=2, frameon=False)
    fig.text(0.01, 0.005, _caption(data), fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_latency(data: dict[str, Any], out: Path) -> Path:
    plt = _pyplot()
    kinds = [k for k in ("text", "image") if k in data]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        d = data[kind]
        labels = ["mmembed\nStore.query", "raw forward\n+ Chroma query"]
        p50 = [d["mmembed_store_query"]["p50_ms"], d["raw_forward_plus_chroma"]["p50_ms"]]
        p95 = [d["mmembed_store_query"]["p95_ms"], d["raw_forward_plus_chroma"]["p95_ms"]]
        xs = range(len(labels))
        ax.bar([x - 0.18 for x in xs], p50, width=0.36, label="p50", color="tab:blue")
        ax.bar([x + 0.18 for x in xs], p95, width=0.36, label="p95", color="tab:orange")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("ms per query")
        ax.set_title(f"{kind} queries ({d['task']}), {data['documents']:,} docs: overhead "
                     f"x{d['overhead_ratio_p50']:.2f} p50", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Query latency, {data.get('encoder', '')}", fontsize=10)
    fig.text(0.01, 0.005, _caption(data), fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder with quality.json / latency.json")
    ap.add_argument("--metric", default="nDCG@10", choices=METRICS, help="metric of the quality figure")
    args = ap.parse_args(argv)
    quality = _load(args.results / "quality.json")
    latency = _load(args.results / "latency.json")
    if quality is None and latency is None:
        print(f"no quality.json or latency.json in {args.results}: run bench_quality.py / bench_latency.py first",
              file=sys.stderr)
        return 1
    if quality is not None:
        print(f"wrote {plot_quality(quality, args.results / 'quality.png', args.metric)}", file=sys.stderr)
    if latency is not None:
        print(f"wrote {plot_latency(latency, args.results / 'latency.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
