"""Scale-out: indexing on Ray vs one process, and the Chroma store at scale (docs/scale-out.md).

    python benchmarks/bench_scale.py                       # both parts, defaults below
    python benchmarks/bench_scale.py --part indexing -n 256
    python benchmarks/bench_scale.py --part store --vectors 1000000

Part ``indexing`` (images/s, as ratios within one run): the same folder of ``-n`` distinct synthetic captioned
images (160x160 PNG) is indexed with the real default model into a ``chroma run`` server started here

* by one process: ``Store.add`` with two torch threads (model loaded first, timed separately);
* on Ray (a local cluster of this machine's logical CPUs, started before timing) with one encoder actor
  (1.5 CPU, two threads) and with two (0.75 CPU, one thread each): the whole ``index_with_ray`` call, which
  includes starting the actors and loading the model in each.

Each run writes to its own collection; ``--repeat`` rounds interleave the three configurations and the
medians are compared. Reported: wall seconds, images/s, the Ray/single ratios (cold: single including its
model load, and warm: single without it), the peak RSS of each encoder actor process (VmHWM), and the load
average (this machine is shared; Ray's own processes share its two cores too).

Part ``store``: ``--vectors`` 384-d synthetic clustered unit vectors (``--clusters`` Gaussian clusters) written
straight to a ``chroma run`` server into a collection created by ``mmembed.Store`` (so with the HNSW settings
mmembed creates collections with), then ``--queries`` held-out queries: recall@10 of the server's HNSW
against exact search (numpy, cosine), ``Store.query_vector`` latency against a raw ``collection.query`` with
the same ``include`` (target <= 1.15x), server RSS after loading, insert rate, and the time a restarted
server takes to answer its first query (load time).

Writes ``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import RESULTS, command_line, load_average, run_header, write_json  # noqa: E402

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---- helpers ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A ``chroma run`` on 127.0.0.1 with its data in ``path``."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path, self.port = path, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
        self.log = path.with_name(path.name + ".log").open("ab")
        self.proc = subprocess.Popen([chroma, "run", "--path", str(path), "--host", "127.0.0.1", "--port",
                                      str(self.port)], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with _NO_PROXY.open(f"{self.url}/api/v2/heartbeat", timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("chroma run exited") from None
                time.sleep(0.1)
        raise RuntimeError("chroma run did not start")

    def memory_mb(self) -> dict[str, float]:
        return proc_memory_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def proc_memory_mb(pid: int) -> dict[str, float]:
    """Resident and peak resident memory of a process, from /proc (Linux)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out["rss_mb" if line.startswith("VmRSS") else "peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


class ActorWatcher(threading.Thread):
    """Samples the peak RSS (VmHWM) of every Ray encoder actor process while a run goes on."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[int, float] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    if b"EncodeAndWrite" not in (proc / "cmdline").read_bytes():
                        continue
                except OSError:
                    continue
                peak = proc_memory_mb(int(proc.name)).get("peak_rss_mb")
                if peak:
                    self.peaks[int(proc.name)] = max(peak, self.peaks.get(int(proc.name), 0.0))
            self.stop_event.wait(0.2)

    def stop(self) -> list[float]:
        self.stop_event.set()
        self.join()
        return sorted(self.peaks.values(), reverse=True)


def make_images(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.integers(0, 256, size=(10, 10, 3), dtype=np.uint8)
        Image.fromarray(base).resize((160, 160), Image.NEAREST).save(folder / f"img-{i:05d}.png")
        (folder / f"img-{i:05d}.txt").write_text(f"synthetic picture number {i}")


# ---- part 1: indexing ------------------------------------------------------------------------------------
def bench_indexing(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    from mmembed import Store, load_encoder
    from mmembed.scale import connect, index_with_ray
    from mmembed.sources import read_source

    folder = work / "images"
    make_images(folder, args.n)
    server = Server(work / "chroma-indexing")
    out: dict[str, Any] = {"images": args.n, "image_size": "160x160 PNG + caption", "batch_size": args.batch_size,
                           "encoder": "default", "rounds": args.repeat}
    runs: dict[str, list[float]] = {"single": [], "ray_1_actor": [], "ray_2_actor": []}
    peaks: dict[str, list[float]] = {"ray_1_actor": [], "ray_2_actor": []}
    plans: dict[str, str] = {}
    try:
        torch.set_num_threads(2)
        t = time.perf_counter()
        encoder = load_encoder("default")
        load_s = time.perf_counter() - t
        docs = read_source(folder)
        t = time.perf_counter()
        cluster = connect("local")
        out["ray_cluster_start_s"] = round(time.perf_counter() - t, 2)
        out["ray_cluster"] = cluster.describe()
        try:
            # rounds interleave the three configurations, so a change in the machine's load hits them alike
            for rnd in range(args.repeat):
                store = Store(url=server.url, encoder=encoder, collection=f"single{rnd}")
                t = time.perf_counter()
                res = store.add([d.item for d in docs], metadatas=[d.metadata for d in docs],
                                batch_size=args.batch_size)
                runs["single"].append(time.perf_counter() - t)
                assert len(res.added) == args.n
                print(f"round {rnd}: single process {args.n / runs['single'][-1]:.2f} images/s", flush=True)
                for actors in (1, 2):
                    key = f"ray_{actors}_actor"
                    watcher = ActorWatcher()
                    watcher.start()
                    t = time.perf_counter()
                    r = index_with_ray(folder, store_url=server.url, collection=f"ray{actors}-{rnd}",
                                       encoder="default", concurrency=actors, batch_size=args.batch_size,
                                       progress=False)
                    runs[key].append(time.perf_counter() - t)
                    peaks[key] += watcher.stop()[:actors]
                    plans[key] = r.plan
                    assert len(r.added) == args.n, r.summary()
                    print(f"round {rnd}: ray {actors} actor(s) {args.n / runs[key][-1]:.2f} images/s", flush=True)
        finally:
            cluster.shutdown()
        med = {k: statistics.median(v) for k, v in runs.items()}
        out["single_process"] = {"threads": 2, "model_load_s": round(load_s, 2),
                                 "index_s": [round(v, 2) for v in runs["single"]],
                                 "images_per_s_median": round(args.n / med["single"], 2),
                                 "peak_rss_mb": proc_memory_mb(os.getpid()).get("peak_rss_mb")}
        for key in ("ray_1_actor", "ray_2_actor"):
            out[key] = {"plan": plans[key], "wall_s": [round(v, 2) for v in runs[key]],
                        "images_per_s_median": round(args.n / med[key], 2),
                        "ratio_vs_single_cold": round((med["single"] + load_s) / med[key], 3),
                        "ratio_vs_single_warm": round(med["single"] / med[key], 3),
                        "actor_peak_rss_mb": peaks[key]}
            print(f"{key}: x{out[key]['ratio_vs_single_cold']} vs single incl. model load, "
                  f"x{out[key]['ratio_vs_single_warm']} without; actor peak RSS {peaks[key]} MB")
        out["ratio_2_actors_vs_1"] = round(med["ray_1_actor"] / med["ray_2_actor"], 3)
        import chromadb

        client = chromadb.HttpClient(host="127.0.0.1", port=server.port)
        ids = {c.name: sorted(client.get_collection(c.name).get(include=[])["ids"]) for c in client.list_collections()}
        out["same_ids_in_all_runs"] = len({tuple(v) for v in ids.values()}) == 1
    finally:
        server.stop()
    return out


# ---- part 2: the store at scale --------------------------------------------------------------------------
def clustered(n: int, centers: Any, seed: int) -> Any:
    """``n`` unit vectors around ``centers`` (Gaussian clusters)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(centers), size=n)
    x = centers[which] + 0.35 * rng.standard_normal((n, centers.shape[1])).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench_store(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import numpy as np

    from mmembed import Store, load_encoder

    dim = 384
    encoder = load_encoder("default")  # a 384-d encoder: the collection is created exactly as mmembed does
    assert encoder.dim == dim
    centers = np.random.default_rng(0).standard_normal((args.clusters, dim)).astype(np.float32)
    data = clustered(args.vectors, centers, seed=1)
    queries = clustered(args.queries, centers, seed=2)  # held out: new points from the same clusters
    path = work / "chroma-store"
    server = Server(path)
    out: dict[str, Any] = {"vectors": args.vectors, "dim": dim, "clusters": args.clusters, "queries": args.queries}
    try:
        store = Store(url=server.url, encoder=encoder, collection="scale")
        col = store.collection
        out["collection_metadata"] = {k: v for k, v in (col.metadata or {}).items() if k.startswith("hnsw")}
        try:
            out["hnsw_configuration"] = col.configuration_json.get("hnsw") or col.configuration_json
        except Exception:  # noqa: BLE001 - older chromadb
            out["hnsw_configuration"] = None
        max_batch = min(5000, store._client.get_max_batch_size())
        t = time.perf_counter()
        for start in range(0, args.vectors, max_batch):
            stop = min(start + max_batch, args.vectors)
            col.add(ids=[f"v{i}" for i in range(start, stop)], embeddings=data[start:stop])
            if start // max_batch % 20 == 0:
                print(f"  loaded {stop} vectors ({stop / (time.perf_counter() - t):.0f}/s)", flush=True)
        insert_s = time.perf_counter() - t
        out["insert_s"] = round(insert_s, 1)
        out["insert_vectors_per_s"] = round(args.vectors / insert_s, 1)
        assert store.count() == args.vectors
        # exact top-10 by cosine (vectors are unit length)
        exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
        include = ["documents", "uris", "metadatas", "distances"]
        for q in queries[:5]:  # warm the index
            col.query(query_embeddings=[q], n_results=10, include=include)
        raw_t, store_t, raw_default_t, recalls = [], [], [], []
        for qi, q in enumerate(queries):
            t = time.perf_counter()
            raw = col.query(query_embeddings=[q], n_results=10, include=include)
            raw_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            hits = store.query_vector(q, k=10)
            store_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            col.query(query_embeddings=[q], n_results=10)
            raw_default_t.append(time.perf_counter() - t)
            got = {int(i[1:]) for i in raw["ids"][0]}
            assert [h.id for h in hits] == raw["ids"][0] or len(hits) == 10
            recalls.append(len(got & set(exact[qi].tolist())) / 10)
        med = statistics.median
        out["recall_at_10"] = round(float(np.mean(recalls)), 4)
        out["recall_at_10_min"] = round(float(np.min(recalls)), 2)
        out["query_ms"] = {"store_query_vector": round(med(store_t) * 1e3, 2),
                           "raw_chroma_same_include": round(med(raw_t) * 1e3, 2),
                           "raw_chroma_default_include": round(med(raw_default_t) * 1e3, 2)}
        out["store_overhead_ratio"] = round(med(store_t) / med(raw_t), 3)
        out["server_memory_after_queries_mb"] = server.memory_mb()
        print(f"recall@10 {out['recall_at_10']}, Store.query_vector / raw = {out['store_overhead_ratio']}x "
              f"({out['query_ms']}), server {out['server_memory_after_queries_mb']}")
        # load time: restart the server on its data and time the first answered query
        server.stop()
        t = time.perf_counter()
        server = Server(path, port=server.port)
        up = time.perf_counter() - t
        again = Store(url=server.url, encoder=encoder, collection="scale")
        again.query_vector(queries[0], k=10)
        out["restart_s"] = {"server_up": round(up, 2), "first_query_answered": round(time.perf_counter() - t, 2)}
        out["server_memory_after_restart_and_one_query_mb"] = server.memory_mb()
        print(f"restart: {out['restart_s']}")
    finally:
        server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["indexing", "store", "both"], default="both")
    ap.add_argument("-n", type=int, default=192, help="images for the indexing part")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=2, help="interleaved rounds of the indexing part (medians)")
    ap.add_argument("--vectors", type=int, default=200_000, help="stored vectors for the store part (1M is the "
                    "target size; this machine is shared, so the default is what fits)")
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = ap.parse_args(argv)
    load_start = load_average()
    work = Path(tempfile.mkdtemp(prefix="mmembed-scale-"))
    payload: dict[str, Any] = {}
    try:
        for part, run in (("indexing", bench_indexing), ("store", bench_store)):
            if args.part in (part, "both"):
                started = load_average()
                payload[part] = run(args, work)
                payload[part]["load_average"] = {"start": started, "end": load_average()}
                payload[part]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                payload[part]["command"] = command_line()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import chromadb
    import ray
    import torch

    result = {**run_header("scale", load_start=load_start),
              "versions": {"ray": ray.__version__, "chromadb": chromadb.__version__, "torch": torch.__version__},
              **payload}
    if args.out.exists() and args.part != "both":  # keep the other part of an earlier run
        import json

        old = json.loads(args.out.read_text())
        other = "store" if args.part == "indexing" else "indexing"
        if other in old:
            result[other] = old[other]
            result[other].setdefault("command", old.get("command"))
            result[other].setdefault("date", old.get("date"))
            result.setdefault("notes", []).append(f"'{other}' part from the run of {old.get('date')}")
    print(f"wrote {write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
