"""Instruction following with phrasings never trained on: does each query reach the modality it asks for?

    python benchmarks/bench_phrasings.py --threads 1                                    # mmembed-mini, all stamps
    python benchmarks/bench_phrasings.py --threads 1 --models mmembed-mini-v2 mmembed-mini
    python benchmarks/bench_phrasings.py --threads 1 --limit 60                         # quick look

Writes ``benchmarks/results/phrasings.json`` (block ``phrasings.heldout`` of ``scripts/render_figures.py``).
Every phrasing of :data:`mmembed.train.phrasings.HELD_OUT` is given as the free-text instruction, next to
reference rows with the registry task of the same name and with no instruction. Pools over the Tux Paint stamps:

* ``images vs captions``: every stamp image as an image document + every distinct caption as a text document;
* ``image+caption vs captions``: every stamp as an image+caption document + the same caption texts.

Queries: text->image = the distinct English captions (both pools; ModAcc@1 = top-1 holds an image, and R@10 in
the first pool = an image whose caption equals the query is in the top 10); image->text = each stamp image
mirrored left-right; text->text = the stamps' distinct de/es/ja translations that differ from the English caption
(both on the first pool; ModAcc@1 = top-1 is a text). Exact search in numpy; captions are merged by
:func:`mmembed.eval.datasets.normalize_caption`.
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

KINDS = ("text->image", "image->text", "text->text")
LANGUAGES = ("de", "es", "ja")
POOL_A, POOL_B = "images vs captions", "image+caption vs captions"
NONE = "(no instruction)"


def _queries(stamps: list[Any]) -> dict[str, list[Any]]:
    from PIL import Image, ImageOps

    from mmembed.eval.datasets import normalize_caption

    def distinct(texts: list[str]) -> list[str]:
        first: dict[str, str] = {}
        for t in texts:
            first.setdefault(normalize_caption(t), t.strip())
        return list(first.values())

    def mirrored(path: Path) -> Any:
        with Image.open(path) as img:
            return ImageOps.mirror(img.convert("RGBA"))

    translations = [s.translations[lang] for lang in LANGUAGES for s in stamps if s.translations.get(lang)
                    and normalize_caption(s.translations[lang]) != normalize_caption(s.caption)]
    return {"text->image": distinct([s.caption for s in stamps]),
            "image->text": [mirrored(s.image_path) for s in stamps],
            "text->text": distinct(translations)}


def _measure(enc: Any, stamps: list[Any], queries: dict[str, list[Any]], batch_size: int) -> list[dict[str, Any]]:
    from mmembed.eval.datasets import normalize_caption
    from mmembed.train.phrasings import HELD_OUT

    captions = queries["text->image"]
    n = len(stamps)
    images = enc.encode_documents([{"image": s.image_path} for s in stamps], batch_size=batch_size)
    fused = enc.encode_documents([{"text": s.caption, "image": s.image_path} for s in stamps], batch_size=batch_size)
    texts = enc.encode_documents(captions, batch_size=batch_size)
    pools = {POOL_A: np.vstack([images, texts]), POOL_B: np.vstack([fused, texts])}  # rows < n hold an image
    stamp_key = np.array([normalize_caption(s.caption) for s in stamps])
    caption_key = np.array([normalize_caption(c) for c in captions])
    rows = []
    for kind in KINDS:
        target = "image" if kind == "text->image" else "text"
        pool_names = (POOL_A, POOL_B) if kind == "text->image" else (POOL_A,)
        settings = [("task", kind, {"task": kind}), ("none", NONE, {})]
        settings += [("held-out", p, {"instruction": p}) for p in HELD_OUT[kind]]
        for source, phrasing, how in settings:
            q = enc.encode_queries(queries[kind], batch_size=batch_size, **how)
            for pool in pool_names:
                scores = q @ pools[pool].T
                top1_image = scores.argmax(axis=1) < n
                hits = top1_image if target == "image" else ~top1_image
                row = {"kind": kind, "phrasing": phrasing, "source": source, "pool": pool, "queries": len(q),
                       "documents": int(pools[pool].shape[0]), "modacc@1": round(float(hits.mean()), 4)}
                if kind == "text->image" and pool == POOL_A:  # a hit: an image of a stamp with this caption
                    top10 = np.argsort(-scores, axis=1, kind="stable")[:, :10]
                    right = (top10 < n) & (stamp_key[np.minimum(top10, n - 1)] == caption_key[:, None])
                    row["r@10"] = round(float(right.any(axis=1).mean()), 4)
                rows.append(row)
    return rows


def _summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for kind in KINDS:
        for pool in dict.fromkeys(r["pool"] for r in rows if r["kind"] == kind):
            held = [r for r in rows if r["kind"] == kind and r["pool"] == pool and r["source"] == "held-out"]
            worst = min(held, key=lambda r: r["modacc@1"])
            out.append({"kind": kind, "pool": pool, "phrasings": len(held),
                        "mean_modacc@1": round(float(np.mean([r["modacc@1"] for r in held])), 4),
                        "min_modacc@1": worst["modacc@1"], "min_phrasing": worst["phrasing"]})
            if "r@10" in held[0]:
                out[-1].update({"mean_r@10": round(float(np.mean([r["r@10"] for r in held])), 4),
                                "min_r@10": min(r["r@10"] for r in held)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mmembed-mini"], help="encoder names (default: mmembed-mini)")
    ap.add_argument("--limit", type=int, default=None, help="a fixed random sample of N stamps (quick runs)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS / "phrasings.json")
    args = ap.parse_args(argv)

    load_start = load_average()
    started = time.perf_counter()
    import PIL
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import mmembed
    from mmembed.data.tuxpaint import load_tuxpaint
    from mmembed.eval.datasets.base import sample_indices

    everything = load_tuxpaint()
    stamps = [everything[i] for i in sample_indices(len(everything), args.limit, args.seed)]
    queries = _queries(stamps)
    models = {}
    for name in args.models:
        t0 = time.perf_counter()
        enc = mmembed.load_encoder(name, device="cpu")
        rows = _measure(enc, stamps, queries, args.batch_size)
        models[name] = {"encoder": enc.name, "seconds": round(time.perf_counter() - t0, 1), "rows": rows,
                        "held_out": _summary(rows)}
        print(f"== {name} ({enc.name}), {models[name]['seconds']:.0f} s", flush=True)
        for r in rows:
            print(f"  {r['kind']:<12} {r['pool']:<26} {r['modacc@1']:.3f}  {r['phrasing']}", flush=True)
        del enc
    payload = {**run_header("phrasings", load_start=load_start),
               "versions": {"mmembed": mmembed.__version__, "torch": torch.__version__, "numpy": np.__version__,
                            "pillow": PIL.__version__},
               "torch_threads": torch.get_num_threads(), "batch_size": args.batch_size,
               "limit": args.limit, "seed": args.seed, "stamps": len(stamps), "languages": list(LANGUAGES),
               "queries": {k: len(v) for k, v in queries.items()},
               "metric_notes": "ModAcc@1: share of queries whose top-1 document holds the asked modality (an image "
                               "for text->image, a text otherwise). R@10: share of text->image queries with an image "
                               "of that caption in the top 10 of the 'images vs captions' pool. Exact search in "
                               "numpy; captions and translations equal under normalize_caption are one query.",
               "seconds": round(time.perf_counter() - started, 1), "models": models}
    print(f"wrote {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
