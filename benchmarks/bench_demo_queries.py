"""What `mmembed demo` shows: the top 5 of its text queries on the images-only Tux Paint collection.

    python benchmarks/bench_demo_queries.py --threads 1                      # mmembed-mini
    python benchmarks/bench_demo_queries.py --threads 1 --models mmembed-mini-v2 mmembed-mini

Writes ``benchmarks/results/demo_queries.json`` (block ``demo.queries`` of ``scripts/render_figures.py``). The
collection holds the same documents as the demo's ``tuxpaint-demo`` collection (every stamp image, captions kept
only as metadata), embedded with ``encode_documents`` and searched exactly in numpy (the score is the cosine
similarity, as ``Store.query`` reports it). Queries: :data:`mmembed.demo.DEMO_QUERIES` with their tasks, plus
:data:`EXTRA_QUERIES`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import RESULTS, load_average, run_header, write_json  # noqa: E402

EXTRA_QUERIES: list[tuple[str, str]] = [("a dog", "text->image"), ("food", "text->image"),
                                        ("a musical instrument", "text->image")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mmembed-mini"], help="encoder names (default: mmembed-mini)")
    ap.add_argument("-k", type=int, default=5, help="results per query (the demo's default)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS / "demo_queries.json")
    args = ap.parse_args(argv)

    load_start = load_average()
    started = time.perf_counter()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import mmembed
    from mmembed.data.tuxpaint import load_tuxpaint
    from mmembed.demo import DEMO_QUERIES

    stamps = load_tuxpaint()
    queries = DEMO_QUERIES + EXTRA_QUERIES
    models = {}
    for name in args.models:
        t0 = time.perf_counter()
        enc = mmembed.load_encoder(name, device="cpu")
        docs = enc.encode_documents([{"image": s.image_path} for s in stamps], batch_size=args.batch_size)
        results = []
        for text, task in queries:
            scores = docs @ enc.encode_queries([text], task=task)[0]
            top = np.argsort(-scores, kind="stable")[:args.k]
            results.append({"query": text, "task": task,
                            "top": [{"id": stamps[i].id, "caption": stamps[i].caption,
                                     "score": round(float(scores[i]), 4)} for i in top]})
            print(f"{name}: {text!r} ({task}) -> " + "; ".join(h["caption"] for h in results[-1]["top"]), flush=True)
        models[name] = {"encoder": enc.name, "seconds": round(time.perf_counter() - t0, 1), "queries": results}
        del enc
    payload = {**run_header("demo_queries", load_start=load_start),
               "versions": {"mmembed": mmembed.__version__, "torch": torch.__version__, "numpy": np.__version__},
               "torch_threads": torch.get_num_threads(), "batch_size": args.batch_size, "k": args.k,
               "documents": len(stamps), "collection": "tuxpaint-demo (every stamp image; captions as metadata)",
               "seconds": round(time.perf_counter() - started, 1), "models": models}
    print(f"wrote {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
