"""How exactly does `python -m mmembed.train.modality` reproduce the shipped mmembed-mini weights?

    python benchmarks/bench_reproduce.py RUN_DIR [RUN_DIR ...] [--out benchmarks/results/reproduce.json]

Each RUN_DIR is the ``--work`` directory of one run of the recipe (``python -m mmembed.train.modality --work
RUN_DIR --threads 2 --no-eval``, ideally each from an empty ``MMEMBED_CACHE``). For every run, and every pair of
runs, the results file gives the sha256 of ``model.safetensors``, whether it is byte-identical, and the
relative difference ``||a - b|| / ||b||`` of each trained tensor (adapters, temperature) and of all of them
together; the data each run was built from (the manifest's digests, compared with the lock's record); and
the run's wall time, threads and load. The README and the model card quote the figures from this file.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import RESULTS, load_average, run_header, write_json  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "mmembed" / "models" / "mmembed-mini-v2"
WEIGHTS = "model.safetensors"
#: what the recipe trains (the towers are frozen and must be equal bit for bit)
TRAINED_PREFIXES = ("query_adapter.", "doc_adapter.", "logit_scale")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(path)).items()}


def compare(a_path: Path, b_path: Path) -> dict[str, Any]:
    """Weights ``a`` against reference ``b``: byte identity, and relative norms of the differences."""
    import torch

    a, b = _tensors(a_path), _tensors(b_path)
    if set(a) != set(b):
        return {"comparable": False, "only_in_a": sorted(set(a) - set(b)), "only_in_b": sorted(set(b) - set(a))}
    rel: dict[str, float] = {}
    trained_a, trained_b = [], []
    frozen_equal = True
    for name in sorted(a):
        if name.startswith(TRAINED_PREFIXES):
            rel[name] = round(float((a[name] - b[name]).norm() / b[name].norm().clamp_min(1e-12)), 6)
            trained_a.append(a[name].flatten())
            trained_b.append(b[name].flatten())
        elif not torch.equal(a[name], b[name]):
            frozen_equal = False
    ta, tb = torch.cat(trained_a), torch.cat(trained_b)
    return {"comparable": True, "byte_identical": _sha(a_path) == _sha(b_path),
            "tensors_identical": all(torch.equal(a[k], b[k]) for k in a),
            "frozen_towers_identical": frozen_equal,
            "relative_difference_all_trained": round(float((ta - tb).norm() / tb.norm()), 6),
            "relative_difference_per_tensor": rel,
            "relative_difference_range": [min(rel.values()), max(rel.values())]}


def describe_run(work: Path) -> dict[str, Any]:
    from mmembed.data.lock import compare_digests, load_lock

    weights = work / "model" / WEIGHTS
    out: dict[str, Any] = {"run": work.name, "weights_sha256": _sha(weights)}
    run = work / "run.json"
    if run.is_file():
        out["timing"] = json.loads(run.read_text())
    summary = work / "model" / "training_summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        out["training_seconds"] = s.get("seconds")
    manifest = work / "data" / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        out["data_digests"] = m["digests"]
        out["packages"] = [{k: p.get(k) for k in ("registry", "name", "version", "sha256", "locked")}
                           for p in m["packages"]]
        out["render_versions"] = m.get("render_versions")
        recipe = "v2"  # the recipe the run prepared (its DONE stamp; runs before v3 have none)
        done = work / "data" / "DONE"
        if done.is_file():
            recipe = json.loads(done.read_text()).get("recipe", "v2")
        from mmembed.train.modality import digest_key

        out["recipe"] = recipe
        recorded = load_lock().digests.get(digest_key(recipe))
        out["data_matches_lock"] = (not compare_digests(recorded, m["digests"], what="data")) if recorded else None
    else:
        out["data_digests"] = None  # a run made before manifests existed
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="--work directories of recipe runs")
    ap.add_argument("--reference", type=Path, default=SHIPPED, help="model directory to compare with (shipped)")
    ap.add_argument("--out", type=Path, default=RESULTS / "reproduce.json")
    ap.add_argument("--describe", action="append", default=[], metavar="RUN=TEXT",
                    help="how a run was made (empty cache or not, interrupted, concurrent...), kept in the results")
    args = ap.parse_args(argv)
    notes = dict(d.split("=", 1) for d in args.describe)
    started = time.perf_counter()
    load_start = load_average()
    ref = args.reference / WEIGHTS
    runs = [describe_run(w) for w in args.runs]
    for r in runs:
        r["how"] = notes.get(r["run"], "")
    for r, w in zip(runs, args.runs):
        r["vs_reference"] = compare(w / "model" / WEIGHTS, ref)
    pairs = []
    for (ra, wa), (rb, wb) in itertools.combinations(zip(runs, args.runs), 2):
        same_data = ra.get("data_digests") is not None and ra.get("data_digests") == rb.get("data_digests")
        pairs.append({"a": ra["run"], "b": rb["run"], "same_data_digests": same_data,
                      **compare(wa / "model" / WEIGHTS, wb / "model" / WEIGHTS)})
    payload = {**run_header("reproduce", load_start=load_start),
               "reference": {"model": args.reference.name, "weights_sha256": _sha(ref)},
               "runs": runs, "pairs": pairs, "seconds": round(time.perf_counter() - started, 1)}
    path = write_json(args.out, payload)
    for r in runs:
        v = r["vs_reference"]
        print(f"{r['run']}: sha256 {r['weights_sha256'][:12]} vs shipped {payload['reference']['weights_sha256'][:12]}: "
              f"identical={v.get('byte_identical')}, relative difference {v.get('relative_difference_all_trained')} "
              f"(per tensor {v.get('relative_difference_range')})")
    for p in pairs:
        print(f"{p['a']} vs {p['b']}: identical={p.get('byte_identical')}, tensors identical="
              f"{p.get('tensors_identical')}, same data={p['same_data_digests']}, "
              f"relative difference {p.get('relative_difference_all_trained')}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
