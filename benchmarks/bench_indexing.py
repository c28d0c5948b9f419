"""Indexing 1,000 real images into Chroma: mmembed vs LangChain's, LlamaIndex's and sentence-transformers'
CLIP paths on the same weights, and mmembed as a fraction of the model's raw batched forward pass.

    python benchmarks/bench_indexing.py                 # 1,000 images, every system
    python benchmarks/bench_indexing.py -n 200 --repeat 3
    python benchmarks/bench_indexing.py -n 200 --systems mmembed-hf sentence-transformers raw-forward \
        --out benchmarks/results/indexing_hf.json       # the transformers-CLIP group only (no open_clip needed)

Two groups of systems, each on one set of random weights:

*open_clip group* (below); *transformers-CLIP group*: one random ``CLIPModel`` at the same sizes saved as a
transformers directory (loaded by ``mmembed.load_encoder`` = ``mmembed-hf``, and by the ``raw-forward``
reference) and saved by sentence-transformers itself in its layout (``SentenceTransformer(dir)``, whose
``encode`` batches; its vectors go into a Chroma collection with the URIs). ``raw-forward`` times only
``get_image_features`` on pixels decoded and preprocessed beforehand: the physical limit, reported as
``mmembed_fraction_of_raw_forward`` (target >= 0.9).

Each system indexes the same image files, from paths to a persisted Chroma collection, in its own
subprocess (so peak RSS is its own), with the *same* weights: a small open_clip architecture (ViT, patch 32,
width 384, QuickGELU, OpenAI-compatible layout), randomly initialised once with a fixed seed and saved as

* an open_clip directory (``open_clip_config.json`` + ``open_clip_model.safetensors``), loaded by
  ``mmembed.load_encoder`` and by ``langchain_experimental.open_clip.OpenCLIPEmbeddings`` (``local-dir:``);
* the same state dict as an OpenAI-CLIP checkpoint file, loaded by ``llama_index.embeddings.clip.ClipEmbedding``
  (``clip.load(path)``).

The systems, each the way its documentation indexes images:

* ``mmembed``: ``mmembed.Store(path, encoder=...).add(paths)`` (batched, stores URIs);
* ``langchain``: ``langchain_chroma.Chroma(embedding_function=OpenCLIPEmbeddings(...)).add_images(uris=paths)``
  (one image per forward pass, the image's base64 stored as the document);
* ``llamaindex``: ``MultiModalVectorStoreIndex.from_documents([ImageDocument(image_path=...)], image_store=
  ChromaVectorStore(...), image_embed_model=ClipEmbedding(...))`` (one image per forward pass).

Timed: the indexing call only (model loading and one warm-up image are timed separately). Before timing,
each system embeds one opaque check image; the vectors must agree (cosine > 0.999), which shows the three
really run the same model. Images: the Tux Paint stamps (``mmembed.data.tuxpaint``), topped up with the
PNG images of Debian's ``tuxpaint-data`` package when fewer than ``-n`` stamps exist; all distinct files.

Needs open_clip and the peers, which pull torchvision: run it in a separate virtualenv (see
benchmarks/README.md). Writes ``benchmarks/results/indexing.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import RESULTS, run_header, write_json  # noqa: E402

SYSTEMS = ("mmembed", "langchain", "llamaindex", "mmembed-hf", "sentence-transformers", "raw-forward")
OPEN_CLIP_SYSTEMS = ("mmembed", "langchain", "llamaindex")
#: the transformers-CLIP group: the same random CLIPModel as a transformers directory (mmembed's hf-clip
#: backend, and the raw batched forward pass) and in sentence-transformers' layout (saved by ST itself)
HF_SYSTEMS = ("mmembed-hf", "sentence-transformers", "raw-forward")

#: transformers CLIP at the open_clip model's sizes (ViT-B/32-like, width 384, QuickGELU)
HF_VISION = {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 12, "num_attention_heads": 6,
             "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu"}

#: A small ViT CLIP in the OpenAI layout (heads = width / 64, QuickGELU), so OpenAI's ``clip.load`` rebuilds
#: exactly the same network from the same state dict.
MODEL_CFG: dict[str, Any] = {
    "embed_dim": 384,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 12, "width": 384, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 384, "heads": 6, "layers": 12},
}
PREPROCESS_CFG = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                  "interpolation": "bicubic", "resize_mode": "shortest"}


# ---------------------------------------------------------------------------------------------------
# set-up (in the parent process)
# ---------------------------------------------------------------------------------------------------
def collect_images(n: int) -> tuple[list[Path], dict[str, int]]:
    """``n`` distinct, decodable images: Tux Paint stamps first, then tuxpaint-data PNGs."""
    from PIL import Image

    from mmembed.data.fetch import fetch_deb
    from mmembed.data.tuxpaint import load_tuxpaint

    sources: list[tuple[str, list[Path]]] = [("tuxpaint-stamps", [s.image_path for s in load_tuxpaint()])]
    if len(sources[0][1]) < n:
        data_root = fetch_deb("tuxpaint-data") / "root"
        sources.append(("tuxpaint-data", sorted(data_root.rglob("*.png"))))
    chosen: list[Path] = []
    counts: dict[str, int] = {}
    seen: set[str] = set()
    for label, paths in sources:
        for p in paths:
            if len(chosen) >= n:
                break
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            if digest in seen:
                continue
            try:
                with Image.open(p) as im:
                    ok = im.mode in ("RGB", "RGBA", "L", "LA", "P") and min(im.size) >= 16
            except Exception:  # noqa: BLE001 - not an image every peer can read: leave it out for all
                ok = False
            if ok:
                seen.add(digest)
                chosen.append(p)
                counts[label] = counts.get(label, 0) + 1
    if len(chosen) < n:
        raise SystemExit(f"only {len(chosen)} usable images found, {n} asked for")
    return chosen, counts


def build_model(dest: Path, seed: int) -> tuple[Path, Path]:
    """Randomly initialise the architecture once; save it for open_clip and as an OpenAI-CLIP checkpoint."""
    import open_clip
    import torch
    from safetensors.torch import save_model

    model_dir = dest / "open_clip_small"
    model_dir.mkdir(parents=True)
    (model_dir / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}, indent=2))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{model_dir}")  # no weights in the folder yet: random init
    save_model(model, str(model_dir / "open_clip_model.safetensors"))
    openai_ckpt = dest / "openai_clip_small.pt"
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, openai_ckpt)
    return model_dir, openai_ckpt


def build_hf_model(dest: Path, seed: int) -> tuple[Path, Path]:
    """A random transformers CLIPModel (+ a small word-level tokenizer and the Pillow image processor), saved
    as a transformers directory and, by sentence-transformers itself, in its layout. Same weights in both."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    words = "<pad> <bos> <unk> <eos> a the photo of picture drawing image".split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>",
                                                       special_tokens=[("<bos>", 1), ("<eos>", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                        pad_token="<pad>", unk_token="<unk>", model_max_length=77)
    text = {"vocab_size": len(words), "hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 12,
            "num_attention_heads": 6, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
            "eos_token_id": 3, "bos_token_id": 1, "pad_token_id": 0}
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=HF_VISION, projection_dim=384)).eval()
    hf_dir = dest / "hf_clip_small"
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(hf_dir)
    st_dir = dest / "st_clip_small"
    SentenceTransformer(modules=[Transformer(str(hf_dir))], device="cpu").save(str(st_dir))
    return hf_dir, st_dir


def make_check_image(path: Path) -> Path:
    """An opaque image (no alpha: every loader sees the same pixels) with structure at several scales."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:400]
    arr = np.stack([(xx * 255 / 400), (yy * 255 / 300), ((xx + yy) % 64) * 4], axis=-1)
    arr = (arr + rng.normal(0, 12, arr.shape)).clip(0, 255).astype("uint8")
    Image.fromarray(arr, "RGB").save(path)
    return path


# ---------------------------------------------------------------------------------------------------
# one system (in its own subprocess)
# ---------------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_mmembed(spec: dict[str, Any]) -> dict[str, Any]:
    import mmembed

    t0 = time.perf_counter()
    enc = mmembed.load_encoder(spec["model_dir"])
    store = mmembed.Store(path=spec["db"], encoder=enc, collection="bench")
    check = enc.encode_documents([Path(spec["check"])])[0].tolist()
    loaded = time.perf_counter()
    rss_loaded = _rss_mb()
    t1 = time.perf_counter()
    store.add([Path(p) for p in spec["images"]], batch_size=spec["batch_size"], show_progress=False)
    t2 = time.perf_counter()
    return {"load_s": loaded - t0, "index_s": t2 - t1, "count": store.count(), "check": check,
            "rss_after_load_mb": rss_loaded, "encoder": enc.name}


def run_langchain(spec: dict[str, Any]) -> dict[str, Any]:
    from langchain_chroma import Chroma
    from langchain_experimental.open_clip import OpenCLIPEmbeddings

    t0 = time.perf_counter()
    emb = OpenCLIPEmbeddings(model_name=f"local-dir:{spec['model_dir']}", checkpoint="")
    vs = Chroma(collection_name="bench", embedding_function=emb, persist_directory=spec["db"])
    check = emb.embed_image([spec["check"]])[0]
    loaded = time.perf_counter()
    rss_loaded = _rss_mb()
    t1 = time.perf_counter()
    vs.add_images(uris=list(spec["images"]))
    t2 = time.perf_counter()
    return {"load_s": loaded - t0, "index_s": t2 - t1, "count": vs._collection.count(), "check": check,
            "rss_after_load_mb": rss_loaded}


def run_llamaindex(spec: dict[str, Any]) -> dict[str, Any]:
    import chromadb
    from llama_index.core import StorageContext
    from llama_index.core.indices import MultiModalVectorStoreIndex
    from llama_index.core.schema import ImageDocument
    from llama_index.embeddings.clip import ClipEmbedding
    from llama_index.vector_stores.chroma import ChromaVectorStore

    t0 = time.perf_counter()
    emb = ClipEmbedding(model_name=spec["openai_ckpt"])
    client = chromadb.PersistentClient(path=spec["db"])
    ctx = StorageContext.from_defaults(
        vector_store=ChromaVectorStore(chroma_collection=client.get_or_create_collection("bench_text")),
        image_store=ChromaVectorStore(chroma_collection=client.get_or_create_collection("bench")),
    )
    check = emb.get_image_embedding(spec["check"])
    loaded = time.perf_counter()
    rss_loaded = _rss_mb()
    t1 = time.perf_counter()
    docs = [ImageDocument(image_path=p, metadata={"file_path": p}) for p in spec["images"]]
    MultiModalVectorStoreIndex.from_documents(docs, storage_context=ctx, image_embed_model=emb, embed_model=emb)
    t2 = time.perf_counter()
    return {"load_s": loaded - t0, "index_s": t2 - t1, "count": client.get_collection("bench").count(),
            "check": check, "rss_after_load_mb": rss_loaded}


def run_mmembed_hf(spec: dict[str, Any]) -> dict[str, Any]:
    return run_mmembed(dict(spec, model_dir=spec["hf_dir"]))


def run_sentence_transformers(spec: dict[str, Any]) -> dict[str, Any]:
    """sentence-transformers has no store: its documented path is ``encode`` (batched) and the vectors go
    into a Chroma collection with the image URIs, as a user would write it."""
    import chromadb
    from PIL import Image
    from sentence_transformers import SentenceTransformer

    t0 = time.perf_counter()
    model = SentenceTransformer(spec["st_dir"], device="cpu", local_files_only=True)
    collection = chromadb.PersistentClient(path=spec["db"]).get_or_create_collection(
        "bench", metadata={"hnsw:space": "cosine"})
    with Image.open(spec["check"]) as im:
        check = model.encode([im.convert("RGB")], normalize_embeddings=True)[0].tolist()
    loaded = time.perf_counter()
    rss_loaded = _rss_mb()
    t1 = time.perf_counter()
    paths, bs = spec["images"], spec["batch_size"]
    for start in range(0, len(paths), bs):
        chunk = paths[start : start + bs]
        images = []
        for p in chunk:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        vecs = model.encode(images, batch_size=bs, normalize_embeddings=True, show_progress_bar=False)
        collection.add(ids=[hashlib.sha256(p.encode()).hexdigest()[:32] for p in chunk],
                       embeddings=vecs.tolist(), uris=chunk)
    t2 = time.perf_counter()
    return {"load_s": loaded - t0, "index_s": t2 - t1, "count": collection.count(), "check": check,
            "rss_after_load_mb": rss_loaded}


def run_raw_forward(spec: dict[str, Any]) -> dict[str, Any]:
    """The physical limit: the model's batched forward pass alone on already decoded, already preprocessed
    pixels (decoding, preprocessing and storage are left out, so nothing real can reach it)."""
    import torch
    from PIL import Image
    from transformers import CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    t0 = time.perf_counter()
    model = CLIPModel.from_pretrained(spec["hf_dir"]).eval()
    proc = CLIPImageProcessorPil.from_pretrained(spec["hf_dir"])

    def pixels(paths: list[str]) -> torch.Tensor:
        images = []
        for p in paths:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        return proc(images, return_tensors="pt")["pixel_values"]

    def features(pixel_values: torch.Tensor) -> torch.Tensor:
        out = model.get_image_features(pixel_values=pixel_values)
        return getattr(out, "pooler_output", out)  # transformers 5 returns an output object

    with torch.inference_mode():
        check = torch.nn.functional.normalize(features(pixels([spec["check"]])), dim=-1)[0].tolist()
    paths, bs = spec["images"], spec["batch_size"]
    batches = [pixels(paths[i : i + bs]) for i in range(0, len(paths), bs)]
    loaded = time.perf_counter()
    rss_loaded = _rss_mb()
    t1 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            features(b)
    t2 = time.perf_counter()
    return {"load_s": loaded - t0, "index_s": t2 - t1, "count": len(paths), "check": check,
            "rss_after_load_mb": rss_loaded}


RUNNERS = {"mmembed": run_mmembed, "langchain": run_langchain, "llamaindex": run_llamaindex,
           "mmembed-hf": run_mmembed_hf, "sentence-transformers": run_sentence_transformers,
           "raw-forward": run_raw_forward}


def worker(system: str, spec_file: Path, out_file: Path) -> None:
    import torch

    spec = json.loads(spec_file.read_text())
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    result = RUNNERS[system](spec)
    n = len(spec["images"])
    result.update({"system": system, "images": n, "images_per_s": n / result["index_s"],
                   "peak_rss_mb": _peak_rss_mb(), "torch_threads": torch.get_num_threads()})
    out_file.write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------------
# orchestration
# ---------------------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("mmembed", "torch", "torchvision", "transformers", "sentence-transformers", "open-clip-torch",
                 "chromadb", "langchain-experimental",
                 "langchain-chroma", "llama-index-core", "llama-index-embeddings-clip",
                 "llama-index-vector-stores-chroma", "clip-anytorch", "openai-clip"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def _cosine(a: list[float], b: list[float]) -> float:
    import numpy as np

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--images", type=int, default=1000, help="how many images to index (default 1000)")
    ap.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS),
                    help="open_clip group: mmembed, langchain, llamaindex; transformers-CLIP group: mmembed-hf, "
                         "sentence-transformers, raw-forward (the model's batched forward pass alone)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per system, interleaved; the median is reported")
    ap.add_argument("--batch-size", type=int, default=32, help="mmembed's encoding batch size")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads in every system (default: torch's own choice, one per core). On a busy "
                         "shared machine use 1: several threads per forward pass then mostly wait on each other")
    ap.add_argument("--out", type=Path, default=RESULTS / "indexing.json")
    ap.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    ap.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.spec, args.result)
        return 0

    work = Path(tempfile.mkdtemp(prefix="mmembed-bench-indexing-"))
    load_start = os.getloadavg()
    try:
        images, composition = collect_images(args.images)
        print(f"{len(images)} images: {composition}", flush=True)
        model_dir = openai_ckpt = hf_dir = st_dir = Path()
        if set(args.systems) & set(OPEN_CLIP_SYSTEMS):
            model_dir, openai_ckpt = build_model(work, args.seed)
        if set(args.systems) & set(HF_SYSTEMS):
            hf_dir, st_dir = build_hf_model(work, args.seed)
        check = make_check_image(work / "check.png")
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in args.systems}
        for rep in range(args.repeat):
            order = args.systems if rep % 2 == 0 else list(reversed(args.systems))
            for system in order:
                db = work / f"db-{system}-{rep}"
                spec = {"model_dir": str(model_dir), "openai_ckpt": str(openai_ckpt), "check": str(check),
                        "hf_dir": str(hf_dir), "st_dir": str(st_dir),
                        "images": [str(p) for p in images], "db": str(db), "batch_size": args.batch_size,
                        "threads": args.threads}
                spec_file, out_file = work / f"spec-{system}.json", work / f"result-{system}-{rep}.json"
                spec_file.write_text(json.dumps(spec))
                cmd = [sys.executable, __file__, "--worker", system, "--spec", str(spec_file),
                       "--result", str(out_file)]
                print(f"[{rep + 1}/{args.repeat}] {system} ...", end=" ", flush=True)
                env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    print("failed")
                    sys.stderr.write(proc.stderr[-4000:])
                    raise SystemExit(f"{system} failed (exit {proc.returncode})")
                res = json.loads(out_file.read_text())
                if res["count"] != len(images):
                    raise SystemExit(f"{system} stored {res['count']} records, expected {len(images)}")
                print(f"{res['images_per_s']:.1f} images/s, peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
                runs[system].append(res)
                shutil.rmtree(db, ignore_errors=True)

        summary: dict[str, dict[str, Any]] = {}
        for system, rs in runs.items():
            summary[system] = {
                "images_per_s": round(statistics.median(r["images_per_s"] for r in rs), 2),
                "index_s": round(statistics.median(r["index_s"] for r in rs), 2),
                "load_s": round(statistics.median(r["load_s"] for r in rs), 2),
                "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in rs)),
                "rss_after_load_mb": round(statistics.median(r["rss_after_load_mb"] for r in rs)),
                "torch_threads": rs[0]["torch_threads"],
                "runs_images_per_s": [round(r["images_per_s"], 2) for r in rs],
            }
        checks = {s: rs[0]["check"] for s, rs in runs.items()}
        agreement: dict[str, float] = {}
        for group in (OPEN_CLIP_SYSTEMS, HF_SYSTEMS):  # each group runs one set of weights
            members = [s for s in group if s in checks]
            for s in members[1:]:
                agreement[f"{members[0]}~{s}"] = round(_cosine(checks[members[0]], checks[s]), 6)
        if any(c < 0.999 for c in agreement.values()):
            raise SystemExit(f"the systems do not compute the same embedding (cosines {agreement})")

        ratios: dict[str, dict[str, float]] = {}
        for mine, group in (("mmembed", OPEN_CLIP_SYSTEMS), ("mmembed-hf", HF_SYSTEMS)):
            if mine not in summary:
                continue
            mm = summary[mine]
            for s in group:
                if s != mine and s in summary and s != "raw-forward":
                    r = summary[s]
                    ratios[s] = {"speedup": round(mm["images_per_s"] / r["images_per_s"], 2),
                                 "peak_rss_ratio": round(r["peak_rss_mb"] / mm["peak_rss_mb"], 2)}
        raw_fraction = None
        if "mmembed-hf" in summary and "raw-forward" in summary:
            # mmembed's whole indexing path (decode, preprocess, forward, store) over the forward pass alone
            raw_fraction = round(summary["mmembed-hf"]["images_per_s"] / summary["raw-forward"]["images_per_s"], 3)

        print()
        print(f"{'system':<12}{'images/s':>10}{'index s':>10}{'load s':>9}{'peak RSS MB':>13}")
        for s, r in summary.items():
            print(f"{s:<12}{r['images_per_s']:>10.1f}{r['index_s']:>10.1f}{r['load_s']:>9.1f}{r['peak_rss_mb']:>13.0f}")
        for s, r in ratios.items():
            print(f"mmembed vs {s}: {r['speedup']:.2f}x images/s; "
                  f"{s} uses {r['peak_rss_ratio']:.2f}x mmembed's peak RSS")
        if raw_fraction is not None:
            print(f"mmembed (hf-clip) indexing throughput = {raw_fraction:.3f} of the raw batched forward pass "
                  "(target >= 0.9)")
        print(f"same-embedding check (cosine on one image): {agreement}")

        payload = {
            **run_header("indexing", with_load=False),  # its own load record below
            "versions": _versions(),
            "images": {"count": len(images), "sources": composition},
            "model": ({"architecture": "open_clip ViT (OpenAI layout), random weights", "seed": args.seed,
                       "config": MODEL_CFG, "parameters_m": _param_count(model_dir)}
                      if set(args.systems) & set(OPEN_CLIP_SYSTEMS) else None),
            "hf_model": ({"architecture": "transformers CLIPModel, random weights, saved as a transformers "
                                          "directory and by sentence-transformers in its layout",
                          "seed": args.seed, "vision_config": HF_VISION}
                         if set(args.systems) & set(HF_SYSTEMS) else None),
            "mmembed_fraction_of_raw_forward": raw_fraction,
            "mmembed_batch_size": args.batch_size,
            "torch_threads": args.threads or "default",
            "repeat": args.repeat,
            "systems": summary,
            "ratios_vs_mmembed": ratios,
            "same_embedding_cosine": agreement,
            # the machine is shared: a load average above the core count means the figures are slowed down
            "load_average_1_5_15": {"start": [round(x, 2) for x in load_start],
                                    "end": [round(x, 2) for x in os.getloadavg()]},
        }
        write_json(args.out, payload)
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _param_count(model_dir: Path) -> float:
    from safetensors import safe_open

    total = 0
    with safe_open(str(model_dir / "open_clip_model.safetensors"), "pt") as fh:
        for key in fh.keys():
            n = 1
            for d in fh.get_slice(key).get_shape():
                n *= d
            total += n
    return round(total / 1e6, 1)


if __name__ == "__main__":
    raise SystemExit(main())
