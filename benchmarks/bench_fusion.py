"""How much weight should mmembed-mini give the image of an image+text document?

mmembed-mini fuses an interleaved item as ``normalise(t + w * i)`` (``t`` the normalised text embedding,
``i`` the normalised mean image embedding). Its image tower is weak next to its frozen text tower, so with
``w = 1`` the image can drown the caption. This measures text -> document retrieval on the Tux Paint
stamps (785 PNG stamps with captions and ~65 translations; never used in training) for three pools:

* ``image+caption``: each stamp indexed as its image and English caption, fused with weight ``w``
* ``caption``:       each stamp indexed by its English caption alone
* ``image``:         each stamp indexed by its image alone

Queries are text: the stamps' translated captions (``de``, ``fr``, ``es``, ...) so text-text matching is
not trivially exact, plus the English captions for reference (there the caption-only pool is an exact
match). One query per stamp that has the language; a hit is any stamp with the same English caption.
For the other side of the trade-off, one image query set too: each stamp's image mirrored left-right
(``img-flip``), which a heavy text weight could make harder to find.

The fused vectors are computed here from ``t`` and ``i`` (cheap for every ``w``) and checked against what
the encoder itself returns for ``w`` = the committed weight and ``w`` = 1.

    python benchmarks/bench_fusion.py [--langs de,fr,es] [--weights 1,0.5,0.3,0.2,0.1,0]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from mmembed.data.tuxpaint import load_tuxpaint
from mmembed.encoders.mini import MiniEncoder, MiniModel, load_default
from mmembed.eval.datasets import normalize_caption
from mmembed.eval.metrics import retrieval_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import load_average, run_header, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "fusion.json"
METRICS = ("R@1", "R@10", "nDCG@10")


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _mirrored(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return ImageOps.mirror(img.convert("RGBA"))


def _encoder_with_weight(enc: MiniEncoder, w: float) -> MiniEncoder:
    """The same weights with another ``fusion.image_weight`` (to check the arithmetic against the encoder)."""
    cfg = copy.deepcopy(enc.model.config)
    cfg["fusion"] = {"image_weight": w}
    model = MiniModel(cfg)
    model.load_state_dict(enc.model.state_dict())
    return MiniEncoder(model, device="cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--langs", default="en,de,fr,es", help="query languages (en = the exact captions)")
    ap.add_argument("--weights", default="1,0.5,0.3,0.2,0.1,0.05,0", help="image weights w to try")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    load_start = load_average()
    torch.set_num_threads(args.threads)
    langs = [x.strip() for x in args.langs.split(",") if x.strip()]
    weights = [float(x) for x in args.weights.split(",")]

    t0 = time.perf_counter()
    stamps = load_tuxpaint()
    # the fusion weight belongs to the towers: measure it on them (the shipped task adapters come after fusion)
    enc = load_default(adapters=False)
    m = enc.model
    captions = [s.caption for s in stamps]
    t = enc.encode_documents(captions)
    i = enc.encode_documents([s.image_path for s in stamps])

    # the hand-made fusion must equal the encoder's own, for the committed weight and for w = 1
    probe = [{"text": s.caption, "image": s.image_path} for s in stamps[:8]]
    for w, e in ((m.image_weight, enc), (1.0, _encoder_with_weight(enc, 1.0))):
        got = e.encode_documents(probe)
        np.testing.assert_allclose(got, _normalise(t[:8] + w * i[:8]), atol=1e-5)

    # captions equal under the eval harness's rule (case, spacing, end punctuation) are one caption
    by_caption: dict[str, list[int]] = defaultdict(list)
    for d, s in enumerate(stamps):
        by_caption[normalize_caption(s.caption)].append(d)

    pools: dict[str, np.ndarray] = {"caption": t, "image": i}
    for w in weights:
        pools[f"image+caption w={w:g}"] = _normalise(t + w * i)

    rows: list[dict] = []
    for lang in [*langs, "img-flip"]:
        if lang == "img-flip":
            q_idx = list(range(len(stamps)))
            q = enc.encode_queries([_mirrored(s.image_path) for s in stamps], task=None)
        else:
            q_idx = [d for d, s in enumerate(stamps) if s.caption_in(lang)]
            q = enc.encode_queries([stamps[d].caption_in(lang) for d in q_idx], task=None)
        relevant = [by_caption[normalize_caption(stamps[d].caption)] for d in q_idx]
        for pool, docs in pools.items():
            res = retrieval_metrics(q @ docs.T, relevant)
            rows.append({"lang": lang, "queries": len(q_idx), "pool": pool,
                         **{k: round(res[k], 4) for k in METRICS}})

    # mean over the translated languages (the honest, non-exact queries)
    trans = [x for x in langs if x != "en"]
    summary: dict[str, dict[str, float]] = {}
    for pool in pools:
        sel = [r for r in rows if r["pool"] == pool and r["lang"] in trans]
        if sel:
            summary[pool] = {k: round(float(np.mean([r[k] for r in sel])), 4) for k in METRICS}

    print(f"{'lang':5} {'n':>4}  {'pool':26} " + " ".join(f"{k:>8}" for k in METRICS))
    for r in rows:
        print(f"{r['lang']:5} {r['queries']:4d}  {r['pool']:26} " + " ".join(f"{r[k]:8.3f}" for k in METRICS))
    if summary:
        print(f"\nmean over {','.join(trans)}:")
        for pool, v in summary.items():
            print(f"      {'':4}  {pool:26} " + " ".join(f"{v[k]:8.3f}" for k in METRICS))

    import mmembed

    write_json(args.out, {
        **run_header("fusion", load_start=load_start), "mmembed": mmembed.__version__,
        "what": "text -> document retrieval on Tux Paint stamps, mmembed-mini fusion weight",
        "encoder": enc.name, "committed_image_weight": m.image_weight, "stamps": len(stamps),
        "fusion": "normalise(t + w * i)",
        "relevant": "stamps whose English caption equals the query stamp's (normalize_caption)",
        "rows": rows, "mean_translated": summary,
        "seconds": round(time.perf_counter() - t0, 1),
    })
    print(f"\nwrote {args.out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
