"""The shipped mmembed-mini checkpoints on the sets their model cards and the README quote.

    python benchmarks/bench_models.py --threads 1        # writes benchmarks/results/models.json

Five checkpoints, each scored with the ``mmembed eval`` harness (exact search, tie-aware metrics, captions
merged by :func:`mmembed.eval.datasets.normalize_caption`):

* ``mmembed-mini-towers``: the default's towers (v3; task adapters reset to the identity), the "before" of
  the task-adapter fine-tuning;
* ``mmembed-mini``: the shipped default (v3 = the towers + fine-tuned task adapters), the "after";
* ``mmembed-mini-v2``: the previous default, on the same sets;
* ``mmembed-mini-minilm``: the default reranker's second opinion (towers trained into all-MiniLM-L6-v2's
  space; v3); ``mmembed-mini-minilm-v1``: the previous one.

Sets: ``tuxpaint`` with the per-stamp text -> image subset, ``tuxpaint-xling`` in the six languages of the
towers' cards and the development set ``openclipart-dev``; for the e5-space checkpoints also ``tuxpaint-mixed``
(ModAcc@1, the modality-bias benchmark), ``tuxpaint-captioned`` (image + text documents among text documents)
and ``python-faq``, ``tuxpaint`` and ``python-faq`` a second time without the instruction. The model cards'
tables, the README's modality table and its per-stamp sentence are rendered from the JSON by
``scripts/render_figures.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import RESULTS, load_average, run_header, update_results, write_json  # noqa: E402

#: label -> what is loaded (a registered name, or a model folder inside the package)
MODELS: dict[str, str] = {
    "mmembed-mini-towers": "mmembed-mini-towers",
    "mmembed-mini": "mmembed-mini",
    "mmembed-mini-v2": "mmembed-mini-v2",
    "mmembed-mini-minilm": "package:mmembed-mini-minilm",
    "mmembed-mini-minilm-v1": "package:mmembed-mini-minilm-v1",
}
#: the checkpoints scored on the modality-bias and FAQ sets too (the before/after of the adapters)
FULL = ("mmembed-mini-towers", "mmembed-mini", "mmembed-mini-v2")
UNINSTRUCTED = ("tuxpaint", "python-faq")


def _folder(spec: str) -> Path:
    """The package folder whose weights ``spec`` loads (the towers are the default's file, adapters reset)."""
    from mmembed.encoders.mini import DEFAULT_DIR, V2_DIR, bundled_folder

    if spec.startswith("package:"):
        folder = bundled_folder(spec[len("package:"):])
        if folder is None:
            raise SystemExit(f"{spec}: no such checkpoint folder in the package")
        return folder
    return V2_DIR if spec.startswith("mmembed-mini-v2") else DEFAULT_DIR


def _weights_sha256(spec: str) -> str:
    """sha256 of the weights file measured."""
    import hashlib

    return hashlib.sha256((_folder(spec) / "model.safetensors").read_bytes()).hexdigest()


def _load(spec: str) -> Any:
    import mmembed

    return mmembed.load_encoder(str(_folder(spec)) if spec.startswith("package:") else spec, device="cpu")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS / "models.json")
    ap.add_argument("--datasets", nargs="+", default=None,
                    help="score only these sets of each model's list (default: all of them)")
    ap.add_argument("--update", action="store_true",
                    help="replace only the rows of the sets scored here in the existing --out file "
                         "(recorded under 'updates')")
    args = ap.parse_args(argv)

    load_start = load_average()
    started = time.perf_counter()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import mmembed
    from mmembed.eval.datasets import tuxpaint, tuxpaint_xling
    from mmembed.eval.runner import format_table
    from mmembed.train.mini import CROSS_LINGUAL
    from mmembed.train.modality import share_text_tower
    from mmembed.train.report import evaluate_sets

    models: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    for label in args.models:
        enc = _load(MODELS[label])
        for other in loaded.values():
            share_text_tower(enc, other)  # one frozen e5 tower (and its memo) for the towers and the default
        loaded[label] = enc
        sets: list[Any] = [tuxpaint(per_stamp=True)]
        if label in FULL:
            sets += ["tuxpaint-mixed", "tuxpaint-captioned", "python-faq"]
        sets += [tuxpaint_xling(languages=CROSS_LINGUAL), "openclipart-dev"]
        if args.datasets:
            sets = [spec for spec in sets if (spec if isinstance(spec, str) else spec.name) in args.datasets]
        t0 = time.perf_counter()
        rows = evaluate_sets(enc, sets, batch_size=args.batch_size,
                             uninstructed=UNINSTRUCTED if label in FULL else ())
        print(f"== {label} ({enc.name}), {time.perf_counter() - t0:.0f} s\n{format_table(rows)}\n", flush=True)
        image_tower = getattr(getattr(enc, "model", None), "image_tower", None)
        models[label] = {"encoder": enc.name, "loaded_as": MODELS[label],
                         "weights_sha256": _weights_sha256(MODELS[label]),
                         "image_tower_parameters": sum(p.numel() for p in image_tower.parameters())
                         if image_tower is not None else None,
                         "seconds": round(time.perf_counter() - t0, 1), "rows": [r.as_dict() for r in rows]}
    payload = {**run_header("models", load_start=load_start), "mmembed": mmembed.__version__,
               "batch_size": args.batch_size, "cross_lingual_languages": list(CROSS_LINGUAL),
               "metric_notes": "R@k is success@k; ties count as their expectation over random order; exact dense "
                               "search in numpy; captions equal under normalize_caption are one caption.",
               "seconds": round(time.perf_counter() - started, 1), "models": models}
    if args.update:
        scored = {r["dataset"] for m in models.values() for r in m["rows"]}
        payload = update_results(args.out, payload, scored,
                                 lambda old, new: [(old["models"][k], new["models"][k], "rows") for k in new["models"]])
    print(f"wrote {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
