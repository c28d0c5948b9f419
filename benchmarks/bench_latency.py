"""Query latency on 10,000 documents: ``mmembed.Store.query`` vs the raw encoder forward + a raw Chroma query.

    python benchmarks/bench_latency.py                 # mmembed-mini, Fashion-MNIST test split (10k images)
    python benchmarks/bench_latency.py --queries 100   # shorter run

Both sides use the same encoder weights and the same vectors in the same Chroma version:

* **mmembed**: ``Store.query(query, k=10, task=...)`` on a collection filled by ``Store.add`` -- coercion,
  image loading, instruction, encoding, checks, the Chroma query and ``Hit`` objects.
* **raw**: the backend's batch forward (``encoder._encode_batch`` on an already coerced, already decoded
  input, plus L2 normalisation) and ``collection.query(query_embeddings=..., n_results=10)`` on a plain
  ``chromadb`` collection holding the same ids and embeddings.

The two are measured interleaved (A B B A ...), one query at a time, so CPU contention on a shared machine
hits both alike. Text queries are all distinct (no embedding cache can help); image queries are test
images. Writes ``benchmarks/results/latency.json``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import RESULTS, load_average, run_header, write_json  # noqa: E402

COLORS = ("red", "blue", "black", "white", "grey", "green", "navy", "beige", "brown", "pink", "striped", "checked")
MATERIALS = ("leather", "cotton", "woollen", "denim", "silk", "knitted", "linen", "suede", "summer", "winter")


def text_queries(n: int) -> list[str]:
    """``n`` distinct product-search texts ("a red leather sneaker"), built from the Fashion-MNIST classes."""
    from mmembed.eval.datasets import FASHION_MNIST_CLASSES

    combos = [f"a {c} {m} {k.replace('/', ' or ')}" for k, c, m in
              itertools.product(FASHION_MNIST_CLASSES, COLORS, MATERIALS)]
    rng = np.random.default_rng(0)
    rng.shuffle(combos)
    if n > len(combos):
        raise SystemExit(f"at most {len(combos)} distinct text queries are available, asked for {n}")
    return combos[:n]


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p95_ms": round(float(np.percentile(a, 95)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": int(a.size)}


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def interleave(pairs: list[tuple[Callable[[], Any], Callable[[], Any]]]) -> tuple[list[float], list[float]]:
    """Time each (a, b) pair, alternating which runs first."""
    ta, tb = [], []
    for i, (a, b) in enumerate(pairs):
        if i % 2 == 0:
            ta.append(timed(a))
            tb.append(timed(b))
        else:
            tb.append(timed(b))
            ta.append(timed(a))
    return ta, tb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="default")
    ap.add_argument("--docs", type=int, default=10_000, help="documents (Fashion-MNIST test images, max 10,000)")
    ap.add_argument("--queries", type=int, default=200, help="timed queries per path and kind")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--out", type=Path, default=RESULTS / "latency.json")
    args = ap.parse_args(argv)

    import chromadb
    from chromadb.config import Settings

    import mmembed
    from mmembed.encoders.base import l2_normalize
    from mmembed.eval.datasets import fashion_mnist
    from mmembed.inputs import coerce
    from mmembed.instructions import resolve_instruction

    load_start = load_average()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    encoder = mmembed.load_encoder(args.encoder)
    pool = fashion_mnist(limit=args.docs if args.docs < 10_000 else None).subsets[0].pool
    docs, ids = pool.items, pool.ids
    n_q = args.queries + args.warmup

    with tempfile.TemporaryDirectory(prefix="mmembed-latency-") as tmp:
        store = mmembed.Store(Path(tmp) / "mmembed", encoder=encoder, collection="latency")
        t0 = time.perf_counter()
        store.add(docs, ids=ids, batch_size=128, show_progress=True)
        index_seconds = time.perf_counter() - t0
        got = store.collection.get(ids=ids, include=["embeddings"])
        vectors = np.asarray(got["embeddings"], dtype=np.float32)
        raw_client = chromadb.PersistentClient(path=str(Path(tmp) / "raw"),
                                               settings=Settings(anonymized_telemetry=False))
        raw = raw_client.create_collection("raw", metadata={"hnsw:space": "cosine"}, embedding_function=None)
        step = 4000
        for s in range(0, len(got["ids"]), step):
            raw.add(ids=got["ids"][s:s + step], embeddings=vectors[s:s + step])
        assert raw.count() == store.count() == len(docs)

        def raw_forward(item: Any, instruction: str | None) -> np.ndarray:
            return l2_normalize(np.asarray(encoder._encode_batch([item], instruction=instruction, is_query=True)))

        def raw_query(vec: np.ndarray) -> Any:
            return raw.query(query_embeddings=[vec], n_results=args.k)

        report: dict[str, Any] = {}
        texts = text_queries(4 * n_q)
        rng = np.random.default_rng(1)
        picks = rng.choice(len(docs), size=4 * n_q, replace=False)
        kinds = {
            "text": ("text->image", texts),
            "image": ("image->image", [docs[i] for i in picks]),
        }
        for kind, (task, queries) in kinds.items():
            instr = resolve_instruction(task)
            # four disjoint query sets: end-to-end A/B, then encoder-only A/B (the database part reuses vectors)
            qa, qb, ea, eb = (queries[i * n_q:(i + 1) * n_q] for i in range(4))
            prepared_b = [coerce(q).load_images(encoder.image_policy) for q in qb]
            prepared_eb = [coerce(q).load_images(encoder.image_policy) for q in eb]
            full_a, full_b = interleave([
                (lambda q=q: store.query(q, k=args.k, task=task),
                 lambda p=p: raw_query(raw_forward(p, instr)[0]))
                for q, p in zip(qa, prepared_b)])
            enc_a, enc_b = interleave([
                (lambda q=q: encoder.encode_queries([q], task=task), lambda p=p: raw_forward(p, instr))
                for q, p in zip(ea, prepared_eb)])
            vecs = encoder.encode_queries(qa, task=task, batch_size=64)
            db_a, db_b = interleave([
                (lambda v=v: store.query_vector(v, k=args.k), lambda v=v: raw_query(v)) for v in vecs])
            w = args.warmup
            a, b = stats(full_a[w:]), stats(full_b[w:])
            report[kind] = {
                "task": task,
                "mmembed_store_query": a,
                "raw_forward_plus_chroma": b,
                "overhead_ratio_p50": round(a["p50_ms"] / b["p50_ms"], 3),
                "overhead_ratio_p95": round(a["p95_ms"] / b["p95_ms"], 3),
                "breakdown": {
                    "encode_queries": stats(enc_a[w:]),
                    "raw_forward": stats(enc_b[w:]),
                    "store_query_vector": stats(db_a[w:]),
                    "raw_chroma_query": stats(db_b[w:]),
                },
            }
            print(f"{kind:>5}: Store.query p50 {a['p50_ms']:.2f} ms p95 {a['p95_ms']:.2f} ms | raw p50 "
                  f"{b['p50_ms']:.2f} ms p95 {b['p95_ms']:.2f} ms | overhead x{report[kind]['overhead_ratio_p50']:.2f}"
                  f" (p50), x{report[kind]['overhead_ratio_p95']:.2f} (p95)", flush=True)

    payload = {
        **run_header("latency", load_start=load_start),
        "mmembed": mmembed.__version__,
        "chromadb": chromadb.__version__,
        "encoder": encoder.name,
        "documents": len(docs),
        "document_source": "Fashion-MNIST test images (Debian dataset-fashion-mnist)",
        "k": args.k,
        "index_seconds": round(index_seconds, 1),
        **report,
    }
    out = write_json(args.out, payload)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
