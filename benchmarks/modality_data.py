"""Count the training pairs of the task-adapter recipe (``python -m mmembed.train.modality``).

    python benchmarks/modality_data.py          # writes benchmarks/results/modality_data.json (v3 recipe; --data v2 for v2's)

Runs the recipe's own ``prepare`` step (registry packages -> ``pairs.jsonl`` + ``pool.jsonl``, cached under
``--work``; never Tux Paint) and ``build_training_data`` on its output, and records what ``mmembed train``
would train on: pairs per task family, the pool size (caption texts plus every positive) and the number of
instruction phrasings. ``docs/training.md`` renders these counts (``scripts/render_figures.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import RESULTS, load_average, run_header, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="recipe working directory (default: in the mmembed cache)")
    ap.add_argument("--images-per-concept", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", choices=("v2", "v3"), default="v3",
                    help="the recipe's data version (default v3, the default model's)")
    ap.add_argument("--out", type=Path, default=RESULTS / "modality_data.json")
    args = ap.parse_args(argv)

    load_start = load_average()
    started = time.perf_counter()
    import mmembed
    from mmembed.data.fetch import cache_dir
    from mmembed.train.finetune import build_training_data
    from mmembed.train.modality import prepare
    from mmembed.train.pairs import read_pairs, read_pool

    work = args.work or cache_dir() / ("modality-recipe" if args.data == "v2" else f"modality-recipe-{args.data}")
    pairs_path, pool_path = prepare(work, images_per_concept=args.images_per_concept, seed=args.seed,
                                    recipe=args.data)
    data = build_training_data(read_pairs(pairs_path), read_pool(pool_path))
    payload = {**run_header("modality_data", load_start=load_start), "mmembed": mmembed.__version__,
               "images_per_concept": args.images_per_concept, "seed": args.seed, "recipe": args.data,
               "pairs_sha256": hashlib.sha256(pairs_path.read_bytes()).hexdigest(),
               "pool_sha256": hashlib.sha256(pool_path.read_bytes()).hexdigest(),
               "data": {"pairs": data.n_pairs, "pool": data.n_pool, "by_task": data.counts(),
                        "instruction_phrasings": len(data.instructions),
                        "pool_file_documents": sum(1 for _ in pool_path.open(encoding="utf-8"))},
               "seconds": round(time.perf_counter() - started, 1)}
    print(f"{payload['data']}\nwrote {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
