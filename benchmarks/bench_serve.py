"""`mmembed serve` against `mmembed.retrieve` in-process on the same index: latency overhead and throughput.

    python benchmarks/bench_serve.py                  # all 785 Tux Paint stamps, 200 queries per kind
    python benchmarks/bench_serve.py --queries 50     # shorter run

* **in-process**: ``mmembed.retrieve(store, query, task=..., k=10)`` in this Python process.
* **served**: ``POST /search`` to ``mmembed serve`` started as a subprocess on 127.0.0.1 (real uvicorn, real HTTP
  on a kept-alive connection): text as JSON, images as multipart uploads of the file's bytes. The server runs the
  same retrieve call, plus parsing, sniffing and decoding the upload, JSON, thumbnail links and its limits.

Both sides load the same encoder weights and search the same Chroma directory. One query at a time, interleaved
(A B B A ...), so load on the shared machine hits both alike; the overhead ratio is served / in-process at p50
and p95 (target <= 1.2). Then 8 client threads send requests at once for throughput, which must end with zero
errors. Writes ``benchmarks/results/serve.json``.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_latency import interleave, stats  # noqa: E402
from bench_quality import RESULTS, load_average, run_header, write_json  # noqa: E402

COLLECTION = "bench-serve"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db: Path, port: int, threads: int | None, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mmembed.cli", "serve", "--db", str(db), "-c", COLLECTION,
           "--listen", f"127.0.0.1:{port}", "--log-level", "warning", "--timeout", "300"]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    import httpx

    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mmembed serve exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("mmembed serve did not start within 300 s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stamps", type=int, default=0, help="index only the first N stamps (0 = all 785)")
    ap.add_argument("--queries", type=int, default=200, help="timed queries per path and kind")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients for the throughput run")
    ap.add_argument("--requests-per-client", type=int, default=25)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch threads on both sides")
    ap.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    args = ap.parse_args(argv)

    import chromadb
    import fastapi
    import httpx
    import numpy as np
    import uvicorn

    import mmembed
    from mmembed.data.tuxpaint import load_tuxpaint

    load_start = load_average()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    stamps = load_tuxpaint()
    if args.stamps:
        stamps = stamps[: args.stamps]
    encoder = mmembed.load_encoder("default")
    n_q = args.queries + args.warmup
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory(prefix="mmembed-bench-serve-") as tmp:
        db = Path(tmp) / "db"
        store = mmembed.Store(db, encoder=encoder, collection=COLLECTION)
        store.record_roots({s.image_path.parent for s in stamps})
        t0 = time.perf_counter()
        store.add([{"image": s.image_path} for s in stamps], ids=[s.id for s in stamps],
                  metadatas=[{"caption": s.caption, "category": s.category} for s in stamps], batch_size=64)
        index_seconds = time.perf_counter() - t0
        port = free_port()
        proc = start_server(db, port, args.threads, Path(tmp) / "serve.log")
        base = f"http://127.0.0.1:{port}"
        report: dict[str, Any] = {}
        try:
            client = httpx.Client(base_url=base, timeout=300)
            # distinct text queries: the captions in English and in other languages, shuffled
            texts = [s.caption for s in stamps] + [t for s in stamps for t in list(s.translations.values())[:3]]
            rng.shuffle(texts)
            images = [stamps[i].image_path for i in rng.choice(len(stamps), size=min(2 * n_q, len(stamps)),
                                                               replace=len(stamps) < 2 * n_q)]
            image_bytes = {p: p.read_bytes() for p in set(images)}
            errors: list[str] = []

            def served_text(q: str) -> None:
                r = client.post("/search", json={"text": q, "task": "text->image", "k": args.k})
                if r.status_code != 200 or len(r.json()["hits"]) != args.k:
                    errors.append(f"{r.status_code}: {r.text[:200]}")

            def served_image(p: Path) -> None:
                r = client.post("/search", data={"task": "image->image", "k": str(args.k)},
                                files={"image": (p.name, image_bytes[p], "image/png")})
                if r.status_code != 200 or len(r.json()["hits"]) != args.k:
                    errors.append(f"{r.status_code}: {r.text[:200]}")

            kinds = {
                "text": ("text->image", [(q, q) for q in texts[: n_q]], served_text),
                "image": ("image->image", [({"image": p}, p) for p in images[: n_q]], served_image),
            }
            # the served answer equals the in-process one (same ids, same order)
            check = client.post("/search", json={"text": texts[0], "task": "text->image", "k": args.k}).json()
            local = mmembed.retrieve(store, texts[0], task="text->image", k=args.k)
            assert [h["id"] for h in check["hits"]] == [h.id for h in local], "served and in-process results differ"
            for kind, (task, pairs, served) in kinds.items():
                in_proc, over_http = interleave([
                    (lambda q=q: mmembed.retrieve(store, q, task=task, k=args.k), lambda s=s: served(s))
                    for q, s in pairs])
                w = args.warmup
                a, b = stats(in_proc[w:]), stats(over_http[w:])
                report[kind] = {
                    "task": task,
                    "in_process_retrieve": a,
                    "served_search": b,
                    "overhead_ratio_p50": round(b["p50_ms"] / a["p50_ms"], 3),
                    "overhead_ratio_p95": round(b["p95_ms"] / a["p95_ms"], 3),
                }
                print(f"{kind:>5}: retrieve p50 {a['p50_ms']:.2f} ms p95 {a['p95_ms']:.2f} ms | POST /search p50 "
                      f"{b['p50_ms']:.2f} ms p95 {b['p95_ms']:.2f} ms | x{report[kind]['overhead_ratio_p50']:.2f} "
                      f"(p50), x{report[kind]['overhead_ratio_p95']:.2f} (p95)", flush=True)

            # throughput: 1 client, then N clients at once, each with its own connection
            def run_clients(n_clients: int, per_client: int) -> dict[str, Any]:
                failures: list[str] = []
                latencies: list[float] = []
                lock = threading.Lock()
                queries = texts[n_q: n_q + n_clients * per_client] or texts

                def worker(c: int) -> None:
                    with httpx.Client(base_url=base, timeout=300) as own:
                        for j in range(per_client):
                            q = queries[(c * per_client + j) % len(queries)]
                            t = time.perf_counter()
                            try:
                                r = own.post("/search", json={"text": q, "task": "text->image", "k": args.k})
                                ok = r.status_code == 200 and len(r.json()["hits"]) == args.k
                                msg = f"{r.status_code}: {r.text[:200]}"
                            except httpx.HTTPError as exc:
                                ok, msg = False, repr(exc)
                            with lock:
                                latencies.append((time.perf_counter() - t) * 1000)
                                if not ok:
                                    failures.append(msg)

                threads = [threading.Thread(target=worker, args=(c,)) for c in range(n_clients)]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - t0
                total = n_clients * per_client
                return {"clients": n_clients, "requests": total, "errors": len(failures),
                        "error_samples": failures[:3], "seconds": round(wall, 2),
                        "requests_per_second": round(total / wall, 2), "latency": stats(latencies)}

            single = run_clients(1, args.requests_per_client)
            many = run_clients(args.clients, args.requests_per_client)
            report["throughput"] = {"one_client": single, f"{args.clients}_clients": many,
                                    "speedup_vs_one_client": round(many["requests_per_second"]
                                                                   / single["requests_per_second"], 3)}
            print(f"throughput: 1 client {single['requests_per_second']:.1f} req/s; {args.clients} clients "
                  f"{many['requests_per_second']:.1f} req/s, {many['errors']} errors "
                  f"(p95 latency {many['latency']['p95_ms']:.0f} ms)", flush=True)
            report["latency_run_errors"] = len(errors)
            if errors:
                print("errors:", errors[:3], file=sys.stderr)
            client.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    payload = {
        **run_header("serve", load_start=load_start),
        "mmembed": mmembed.__version__,
        "chromadb": chromadb.__version__,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "httpx": httpx.__version__,
        "encoder": encoder.name,
        "documents": len(stamps),
        "document_source": "Tux Paint stamps (Debian tuxpaint-stamps-default)",
        "k": args.k,
        "threads": args.threads,
        "index_seconds": round(index_seconds, 1),
        "target_overhead_ratio": 1.2,
        **report,
    }
    out = write_json(args.out, payload)
    print(f"wrote {out}", file=sys.stderr)
    ok = all(report[k]["overhead_ratio_p50"] <= 1.2 for k in ("text", "image")) and \
        report["throughput"][f"{args.clients}_clients"]["errors"] == 0 and not errors
    print("targets met" if ok else "targets NOT met", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
