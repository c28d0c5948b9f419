"""Instruction-following fine-tuning with modality-aware hard negatives (MM-Embed's recipe, small scale).

Stages (``FinetuneConfig.stages``):

1. **in-batch negatives** from the initial model: every other positive in the batch is a negative, except
   false negatives (same id, or same concept in the same modality);
2. **modality-aware hard negatives**: the stage-1 model ranks the pool (the positives plus ``--pool``) for
   every query; wrong-modality candidates ranked above the positive and right-modality candidates just
   below the top (:mod:`mmembed.train.mining`) join the batch as extra negatives. As in the paper, training
   restarts from the *initial* model (``stage2_init="initial"``): stage 1 is only the miner;
3. optional **continual text->text** stage: continue at a lower learning rate on the text->text pairs (plus an
   equal replay sample of the others, so the instruction lessons are kept) with the mined negatives.

Everything is deterministic from ``seed``: each epoch's order and each step's randomness (paraphrase choice,
negative sampling, augmentation) come from generators seeded by (seed, stage, epoch, step). That is what
makes ``resume`` exact: the state saved after each epoch (and on Ctrl-C / SIGTERM, and every
``save_every`` steps) holds the weights, the optimizer and the mined negatives, and a resumed run ends with
the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .backends import TrainableBackend, TrainingError
from .cards import CARD_FILE, STAGE_NAMES
from .cards import finetune_card as model_card
from .mining import MinedNegatives, MiningConfig, mine_hard_negatives
from .pairs import Pair, PoolDoc, item_key

STATE_FILE = "state.pt"
CHECKPOINT_DIR = "checkpoints"
SUMMARY_FILE = "training_summary.json"


@dataclass
class FinetuneConfig:
    """Options of a fine-tuning run (everything that changes the result is in the resume fingerprint)."""

    stages: tuple[int, ...] = (1, 2)
    epochs: int = 2
    stage_epochs: dict[int, int] = field(default_factory=dict)  # per-stage override of ``epochs``
    batch_size: int = 128
    lr: float = 1e-3
    image_lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 20
    grad_clip: float = 1.0
    hard_negatives: int = 2  # sampled per query per step from its mined list (stages 2-3)
    top_k: int = 50
    right_ranks: tuple[int, int] | None = None  # default: the last five ranks of top_k
    max_wrong: int = 8
    stage2_init: str = "initial"  # or "stage1"
    stage3_lr_scale: float = 0.2
    modality_margin: float = 0.2  # cosine margin a wrong-modality column must stay below the positive by
    anchor_weight: float = 1.0  # keep text documents and uninstructed queries where the towers put them
    plain_fraction: float = 0.25  # share of rows asked without their instruction (within-modality ranking)
    paraphrase: bool = True
    seed: int = 0
    save_every: int = 0  # also checkpoint every N steps (0: at epoch ends only)

    def __post_init__(self) -> None:
        self.stages = tuple(int(s) for s in self.stages)
        if not self.stages or any(s not in (1, 2, 3) for s in self.stages) or list(self.stages) != sorted(
                set(self.stages)):
            raise TrainingError(f"stages must be an increasing selection of 1, 2, 3, got {list(self.stages)}")
        if self.epochs < 1 or any(v < 1 for v in self.stage_epochs.values()):
            raise TrainingError("epochs must be >= 1")
        if self.batch_size < 2:
            raise TrainingError(f"batch_size must be >= 2 (in-batch negatives need company), got {self.batch_size}")
        if self.hard_negatives < 0 or self.top_k < 1:
            raise TrainingError("hard_negatives must be >= 0 and top_k >= 1")
        if self.stage2_init not in ("initial", "stage1"):
            raise TrainingError(f"stage2_init must be 'initial' or 'stage1', got {self.stage2_init!r}")
        if not 0 <= self.plain_fraction < 1:
            raise TrainingError(f"plain_fraction must be in [0, 1), got {self.plain_fraction}")
        if self.anchor_weight < 0:
            raise TrainingError(f"anchor_weight must be >= 0, got {self.anchor_weight}")
        if self.modality_margin < 0:
            raise TrainingError(f"modality_margin must be >= 0, got {self.modality_margin}")
        if self.lr <= 0 or self.image_lr <= 0:
            raise TrainingError("learning rates must be > 0")
        if self.right_ranks is not None:
            self.right_ranks = (int(self.right_ranks[0]), int(self.right_ranks[1]))
            MiningConfig(self.top_k, self.right_ranks).window()

    def epochs_of(self, stage: int) -> int:
        return int(self.stage_epochs.get(stage, self.epochs))

    def mining(self) -> MiningConfig:
        return MiningConfig(top_k=self.top_k, right_ranks=self.right_ranks, max_wrong=self.max_wrong)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = list(self.stages)
        d["stage_epochs"] = {str(k): v for k, v in sorted(self.stage_epochs.items())}
        d["right_ranks"] = list(self.right_ranks) if self.right_ranks else None
        d.pop("save_every")
        return d


@dataclass
class StageResult:
    stage: int
    epochs: int
    steps: int
    seconds: float
    loss_first_epoch: float
    loss_last_epoch: float
    pairs: int
    mining: dict[str, Any] | None = None


@dataclass
class FinetuneResult:
    out: Path
    stages: list[StageResult]
    seconds: float
    epoch_losses: list[dict[str, Any]]
    data: dict[str, Any]
    trained: dict[str, Any]


# ---- the data the loop indexes ------------------------------------------------------------------------
@dataclass
class TrainingData:
    """Pairs and pool flattened into item indices and integer codes (what each step needs, vectorised).

    Items ``0..n_pairs-1`` are the queries; items ``n_pairs + p`` are pool document ``p``. The pool is every
    distinct positive plus every distinct ``--pool`` document.
    """

    items: list[Any]
    where: list[str]
    n_pairs: int
    positive: np.ndarray  # (n_pairs,) pool index of each pair's positive
    pair_id: np.ndarray  # (n_pairs,) id code
    pair_concept: np.ndarray  # (n_pairs,) concept code, -1 none
    pool_id: np.ndarray  # (n_pool,)
    pool_concept: np.ndarray
    pool_modality: np.ndarray  # codes into ``modalities``
    modalities: list[str]
    pool_ids: list[str]
    pool_concepts: list[str | None]
    query_modality: list[str]
    instructions: list[str]  # distinct phrasings
    pair_instructions: list[list[int]]  # per pair: its phrasings (empty: no instruction)

    @property
    def n_pool(self) -> int:
        return len(self.pool_id)

    def target_modality(self, i: int) -> str:
        return self.modalities[int(self.pool_modality[self.positive[i]])]

    def mixed_positive(self, rows: np.ndarray) -> np.ndarray:
        """Per row: its positive is interleaved (image + text), a document no instruction's modality names."""
        mixed = np.array(["+" in m for m in self.modalities], dtype=bool)
        return mixed[self.pool_modality[self.positive[rows]]]

    def text_to_text(self) -> np.ndarray:
        return np.array([i for i in range(self.n_pairs)
                         if self.query_modality[i] == "text" and self.target_modality(i) == "text"], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(self.n_pairs):
            key = f"{self.query_modality[i]}->{self.target_modality(i)}"
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))


def build_training_data(pairs: Sequence[Pair], pool: Sequence[PoolDoc] = ()) -> TrainingData:
    codes_id: dict[str, int] = {}
    codes_concept: dict[str, int] = {}
    codes_mod: dict[str, int] = {}

    def code(table: dict[str, int], v: str | None) -> int:
        return -1 if v is None else table.setdefault(v, len(table))

    items: list[Any] = [p.query for p in pairs]
    where = [f"{p.where} 'query'" for p in pairs]
    by_key: dict[str, int] = {}
    pool_ids: list[str] = []
    pool_concepts: list[str | None] = []
    pool_mods: list[str] = []

    def add(item: Any, did: str, concept: str | None, w: str) -> int:
        key = item_key(item)
        if key in by_key:
            return by_key[key]
        by_key[key] = len(pool_ids)
        items.append(item)
        where.append(w)
        pool_ids.append(did)
        pool_concepts.append(concept)
        pool_mods.append(item.modality)
        return by_key[key]

    positive = np.array([add(p.positive, p.id, p.concept, f"{p.where} 'positive'") for p in pairs], dtype=np.int64)
    for d in pool:
        add(d.item, d.id, d.concept, f"{d.where} document")
    instructions: dict[str, int] = {}
    pair_instr = []
    for p in pairs:
        pair_instr.append([instructions.setdefault(t, len(instructions)) for t in p.instructions() if t is not None])
    return TrainingData(
        items=items, where=where, n_pairs=len(pairs), positive=positive,
        pair_id=np.array([code(codes_id, p.id) for p in pairs], dtype=np.int64),
        pair_concept=np.array([code(codes_concept, p.concept) for p in pairs], dtype=np.int64),
        pool_id=np.array([code(codes_id, i) for i in pool_ids], dtype=np.int64),
        pool_concept=np.array([code(codes_concept, c) for c in pool_concepts], dtype=np.int64),
        pool_modality=np.array([code(codes_mod, m) for m in pool_mods], dtype=np.int64),
        modalities=sorted(codes_mod, key=codes_mod.__getitem__), pool_ids=pool_ids, pool_concepts=pool_concepts,
        query_modality=[p.query.modality for p in pairs], instructions=list(instructions),
        pair_instructions=pair_instr)


# ---- helpers ---------------------------------------------------------------------------------------------
def _generator(*key: int) -> torch.Generator:
    digest = hashlib.sha256(json.dumps(key).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def _lr_factor(step: int, total: int, warmup: int) -> float:
    warm = min(1.0, (step + 1) / max(1, warmup))
    return warm * max(0.02, 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total)))))


def same_concept(data: TrainingData, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(len(rows), len(cols))``: column ``j`` shows the concept of pair ``rows[i]``, in any modality."""
    concept = data.pair_concept[rows][:, None]
    return (concept >= 0) & (data.pool_concept[cols][None, :] == concept)


def false_negative_mask(data: TrainingData, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(len(rows), len(cols))``: column document ``cols[j]`` (pool index) must not be a negative of pair
    ``rows[i]`` -- it is that pair's positive, has its id, or shares its concept in the positive's modality."""
    pos = data.positive[rows]
    mask = (cols[None, :] == pos[:, None]) | (data.pool_id[cols][None, :] == data.pair_id[rows][:, None])
    mask |= same_concept(data, rows, cols) & (data.pool_modality[cols][None, :] == data.pool_modality[pos][:, None])
    return mask


def batch_mask(data: TrainingData, rows: np.ndarray, cols: np.ndarray, plain: np.ndarray,
               modality_margin: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Which columns are left out of each row's softmax, and the cosine margin the others must stay below the
    positive by (``None`` without a margin).

    * false negatives (:func:`false_negative_mask`) never compete;
    * a row asked without its instruction (``plain``) competes only against its positive's modality;
    * a row whose positive is interleaved (a drawing with its caption, a page with its text layer) holds the text
      a plain query asks for: every candidate competes, asked with or without its instruction, with no modality
      margin, and the same concept in any modality is a right answer too, never a negative;
    * otherwise a wrong-modality column must stay ``modality_margin`` below the positive.
    """
    mask = false_negative_mask(data, rows, cols)
    wrong = data.pool_modality[cols][None, :] != data.pool_modality[data.positive[rows]][:, None]
    mixed = data.mixed_positive(rows)
    mask |= (plain & ~mixed)[:, None] & wrong
    if mixed.any():
        mask |= mixed[:, None] & same_concept(data, rows, cols)
    margin = None
    if modality_margin:
        margin = np.where(wrong & ~plain[:, None] & ~mixed[:, None], modality_margin, 0.0)
    return mask, margin


def contrastive_loss(q: torch.Tensor, d: torch.Tensor, scale: torch.Tensor, mask: np.ndarray,
                     margin: np.ndarray | None = None) -> torch.Tensor:
    """InfoNCE of query i against column i (its positive) and every unmasked column. ``margin`` (same shape
    as ``mask``, cosine units) is added to those columns' similarities: the positive must beat them by it."""
    sims = q @ d.T
    if margin is not None:
        sims = sims + torch.from_numpy(margin.astype(np.float32))
    logits = scale * sims
    m = torch.from_numpy(mask)
    m[torch.arange(q.shape[0]), torch.arange(q.shape[0])] = False
    logits = logits.masked_fill(m, float("-inf"))
    return F.cross_entropy(logits, torch.arange(q.shape[0]))


# ---- the trainer ---------------------------------------------------------------------------------------------
class Finetuner:
    """Runs the stages over prepared data with a :class:`TrainableBackend`, checkpointing into ``out``."""

    def __init__(self, backend: TrainableBackend, data: TrainingData, cfg: FinetuneConfig, out: Path, *,
                 fingerprint: str, log: Callable[[str], None] = print, progress: bool | None = None,
                 on_step: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.backend = backend
        self.data = data
        self.cfg = cfg
        self.out = out
        self.ckpt_dir = out / CHECKPOINT_DIR
        self.fingerprint = fingerprint
        self.log = log
        self.progress = progress
        self.on_step = on_step
        self.initial = backend.state_dict()
        self.history: list[dict[str, Any]] = []
        self.stage_results: list[StageResult] = []
        self.negatives: MinedNegatives | None = None

    # ---- checkpoints -----------------------------------------------------------------------------------
    def _save(self, state: dict[str, Any]) -> None:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt_dir / f"{STATE_FILE}.tmp{os.getpid()}"
        torch.save(state, tmp)
        tmp.replace(self.ckpt_dir / STATE_FILE)

    def _state(self, pos: int, epoch: int, step: int, opt: torch.optim.Optimizer | None, started: bool,
               global_step: int, epoch_losses: list[float]) -> dict[str, Any]:
        neg = None if self.negatives is None else {
            "negatives": self.negatives.negatives, "kinds": self.negatives.kinds,
            "positive_rank": self.negatives.positive_rank, "stats": self.negatives.stats}
        return {"version": 1, "fingerprint": self.fingerprint, "stage_pos": pos, "epoch": epoch, "step": step,
                "started": started, "global_step": global_step, "model": self.backend.state_dict(),
                "optimizer": None if opt is None else opt.state_dict(), "negatives": neg,
                "history": self.history, "stage_results": [asdict(r) for r in self.stage_results],
                "epoch_losses": list(epoch_losses)}

    def load_state(self) -> dict[str, Any] | None:
        path = self.ckpt_dir / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a torn or foreign file: say so rather than crash later
            raise TrainingError(f"cannot read the checkpoint {path}: {exc}") from exc
        if state.get("fingerprint") != self.fingerprint:
            raise TrainingError(
                f"the checkpoint in {self.ckpt_dir} was made with other data, options or base model; resume with "
                "exactly the same command, or start afresh with --overwrite (or a new --out)")
        return state

    # ---- mining ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_all(self, *, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Query (canonical instruction) and pool embeddings with the current weights, eval mode."""
        d = self.data
        self.backend.train(False)
        qs, ps = [], []
        for s in range(0, d.n_pairs, batch):
            idx = torch.arange(s, min(s + batch, d.n_pairs))
            instr = torch.tensor([(d.pair_instructions[i] or [-1])[0] for i in idx.tolist()], dtype=torch.long)
            qs.append(self.backend.embed(idx, instr, is_query=True))
        for s in range(0, d.n_pool, batch):
            idx = torch.arange(d.n_pairs + s, d.n_pairs + min(s + batch, d.n_pool))
            ps.append(self.backend.embed(idx, None, is_query=False))
        return torch.cat(qs).numpy(), torch.cat(ps).numpy()

    def mine(self) -> MinedNegatives:
        t0 = time.monotonic()
        d = self.data
        q, p = self.embed_all()
        mined = mine_hard_negatives(
            q, p, positives=d.positive.tolist(), positive_ids=[str(x) for x in d.pair_id.tolist()],
            concepts=[None if c < 0 else str(c) for c in d.pair_concept.tolist()],
            pool_ids=[str(x) for x in d.pool_id.tolist()],
            pool_concepts=[None if c < 0 else str(c) for c in d.pool_concept.tolist()],
            pool_modalities=[d.modalities[m] for m in d.pool_modality.tolist()], cfg=self.cfg.mining())
        mined.stats["seconds"] = round(time.monotonic() - t0, 1)
        self.log("mined hard negatives: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                        for k, v in mined.stats.items()))
        return mined

    # ---- one step ----------------------------------------------------------------------------------------
    def _step_batch(self, rows: np.ndarray, stage: int, g: torch.Generator) -> torch.Tensor:
        d, cfg = self.data, self.cfg
        instr = []
        # instruction dropout: some rows are asked without their instruction. With no instruction the
        # modality is unspecified, so for those rows only candidates of the positive's modality compete:
        # they teach the adapters to keep the towers' ranking within a modality (plain search over images)
        plain = (torch.rand(len(rows), generator=g) < cfg.plain_fraction).numpy()
        for k, i in enumerate(rows.tolist()):
            opts = d.pair_instructions[i]
            if not opts:
                instr.append(-1)
                plain[k] = False  # a pair without instruction trains as given, against every candidate
            elif plain[k]:
                instr.append(-1)
            elif cfg.paraphrase and len(opts) > 1:
                instr.append(opts[int(torch.randint(len(opts), (1,), generator=g))])
            else:
                instr.append(opts[0])
        cols = list(d.positive[rows].tolist())
        if stage >= 2 and self.negatives is not None and cfg.hard_negatives > 0:
            for i in rows.tolist():
                cand = self.negatives.negatives[i]
                if not cand:
                    continue
                take = min(cfg.hard_negatives, len(cand))
                pick = torch.randperm(len(cand), generator=g)[:take].tolist()
                cols.extend(cand[j] for j in pick)
        cols_arr = np.asarray(cols, dtype=np.int64)
        q = self.backend.embed(torch.from_numpy(rows), torch.tensor(instr, dtype=torch.long), is_query=True,
                               generator=g)
        uniq, inverse = np.unique(cols_arr, return_inverse=True)
        doc_items = torch.from_numpy(uniq + d.n_pairs)
        docs_u = self.backend.embed(doc_items, None, is_query=False, generator=g)
        docs = docs_u[torch.from_numpy(inverse.reshape(-1))]
        mask, margin = batch_mask(d, rows, cols_arr, plain, cfg.modality_margin)
        scale = self.backend.logit_scale.exp().clamp(max=100.0)  # type: ignore[attr-defined]
        loss = contrastive_loss(q, docs, scale, mask, margin)
        if cfg.anchor_weight > 0:
            loss = loss + cfg.anchor_weight * self._anchor_loss(rows, q, uniq, doc_items, docs_u, g)
        return loss

    def _anchor_loss(self, rows: np.ndarray, q: torch.Tensor, uniq: np.ndarray, doc_items: torch.Tensor,
                     docs: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """``1 - cos`` between adapted and tower embeddings of what no instruction asks to move: the batch's
        text documents, its queries asked *without* an instruction, and its instructed queries that ask for
        their own modality (text->text: a text query already finds texts). The frozen text tower's space is
        the product's text retrieval; anchoring keeps it, so only image documents and cross-modal queries
        move far."""
        d = self.data
        text_code = d.modalities.index("text") if "text" in d.modalities else -1
        text = torch.from_numpy(d.pool_modality[uniq] == text_code)
        parts = []
        q_items = torch.from_numpy(rows)
        raw_q = self.backend.embed(q_items, None, is_query=True, generator=g, adapt=False).detach()
        same = torch.tensor([d.query_modality[i] == d.target_modality(i) for i in rows.tolist()], dtype=torch.bool)
        if bool(same.any()):
            parts.append(1 - (q[same] * raw_q[same]).sum(-1))
        if bool(text.any()):
            raw = self.backend.embed(doc_items[text], None, is_query=False, adapt=False).detach()
            parts.append(1 - (docs[text] * raw).sum(-1))
        plain = self.backend.embed(q_items, torch.full((len(rows),), -1, dtype=torch.long), is_query=True,
                                   generator=g)
        parts.append(1 - (plain * raw_q).sum(-1))
        return torch.stack([p.mean() for p in parts]).sum()

    # ---- the stages ------------------------------------------------------------------------------------------
    def _stage_rows(self, stage: int) -> np.ndarray:
        d = self.data
        every = np.arange(d.n_pairs, dtype=np.int64)
        if stage != 3:
            return every
        t2t = d.text_to_text()
        if t2t.size == 0:
            raise TrainingError("stage 3 (continual text->text) needs text->text pairs (text query, text "
                                "positive); the pairs file has none -- drop 3 from --stages")
        rest = np.setdiff1d(every, t2t)
        rng = np.random.default_rng(self.cfg.seed + 3)
        replay = rng.choice(rest, size=min(len(rest), len(t2t)), replace=False) if rest.size else rest
        return np.sort(np.concatenate([t2t, replay]))

    def _optimizer(self, stage: int) -> torch.optim.Optimizer:
        scale = self.cfg.stage3_lr_scale if stage == 3 else 1.0
        groups = self.backend.parameter_groups(self.cfg.lr * scale, self.cfg.image_lr * scale,
                                               self.cfg.weight_decay)
        for g in groups:
            g["initial_lr"] = g["lr"]
        return torch.optim.AdamW(groups, betas=(0.9, 0.98))

    def run(self, *, resume: bool = False) -> list[StageResult]:
        cfg = self.cfg
        state = self.load_state() if resume else None
        if resume and state is None:
            self.log(f"no checkpoint in {self.ckpt_dir}: starting from the beginning")
        start_pos = 0
        if state is not None:
            self.backend.load_state_dict(state["model"])
            self.history = list(state["history"])
            self.stage_results = [StageResult(**r) for r in state["stage_results"]]
            if state["negatives"] is not None:
                n = state["negatives"]
                self.negatives = MinedNegatives(n["negatives"], n["kinds"], n["positive_rank"], n["stats"])
            start_pos = state["stage_pos"]
            if start_pos < len(cfg.stages):
                self.log(f"resuming stage {cfg.stages[start_pos]} at epoch {state['epoch'] + 1}, "
                         f"step {state['step']}")
        for pos in range(start_pos, len(cfg.stages)):
            stage = cfg.stages[pos]
            resumed = state if (state is not None and pos == start_pos and state["started"]) else None
            self._run_stage(pos, stage, resumed)
            state = None
        return self.stage_results

    def _run_stage(self, pos: int, stage: int, resumed: dict[str, Any] | None) -> None:
        cfg = self.cfg
        t0 = time.monotonic()
        if resumed is None:
            if stage == 2 or (stage == 3 and self.negatives is None and cfg.hard_negatives > 0):
                self.log(f"stage {stage}: mining with the {'stage-1' if 1 in cfg.stages[:pos] else 'current'} model")
                self.negatives = self.mine()
            if stage == 2 and cfg.stage2_init == "initial":
                self.backend.load_state_dict(self.initial)
        rows_all = self._stage_rows(stage)
        bs = min(cfg.batch_size, len(rows_all))
        steps_per_epoch = max(1, len(rows_all) // bs)
        epochs = cfg.epochs_of(stage)
        total = steps_per_epoch * epochs
        opt = self._optimizer(stage)
        epoch0, step0, gstep = 0, 0, 0
        epoch_losses: list[float] = []
        if resumed is not None:
            if resumed["optimizer"] is not None:
                opt.load_state_dict(resumed["optimizer"])
            epoch0, step0, gstep = resumed["epoch"], resumed["step"], resumed["global_step"]
            epoch_losses = list(resumed.get("epoch_losses", []))
        else:
            self._save(self._state(pos, 0, 0, opt, True, 0, []))
        mining_stats = dict(self.negatives.stats) if (self.negatives is not None and stage >= 2) else None
        from ..progress import progress

        for epoch in range(epoch0, epochs):
            perm = rows_all[torch.randperm(len(rows_all), generator=_generator(cfg.seed, stage, epoch)).numpy()]
            self.backend.train(True)
            start = step0 if epoch == epoch0 else 0
            # a bar on a terminal, periodic lines in a log (self.progress False: none)
            bar = progress(steps_per_epoch, f"stage {stage} epoch {epoch + 1}/{epochs}", "step",
                           show=False if self.progress is False else None, leave=False, initial=start)
            next_step = start
            try:
                for step in range(start, steps_per_epoch):
                    rows = perm[step * bs:(step + 1) * bs]
                    f = _lr_factor(gstep, total, cfg.warmup_steps)
                    for group in opt.param_groups:
                        group["lr"] = group["initial_lr"] * f
                    loss = self._step_batch(rows, stage, _generator(cfg.seed, stage, epoch, step))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]],
                                                       cfg.grad_clip)
                    opt.step()
                    self.backend.after_step()
                    gstep += 1
                    next_step = step + 1
                    epoch_losses.append(float(loss.detach()))
                    bar.update(1)
                    bar.set_postfix(loss=f"{np.mean(epoch_losses[-20:]):.3f}")
                    if cfg.save_every and gstep % cfg.save_every == 0 and next_step < steps_per_epoch:
                        self._save(self._state(pos, epoch, next_step, opt, True, gstep, epoch_losses))
                    if self.on_step is not None:
                        self.on_step({"stage": stage, "epoch": epoch + 1, "step": next_step, "global_step": gstep,
                                      "loss": epoch_losses[-1]})
            except KeyboardInterrupt:
                # save where we are (an interrupted step never half-happens: the optimizer steps last), then
                # let the caller stop; --resume continues from exactly here
                self._save(self._state(pos, epoch, next_step, opt, True, gstep, epoch_losses))
                bar.close()
                self.log(f"interrupted in stage {stage} epoch {epoch + 1} after step {next_step}; "
                         f"checkpoint saved in {self.ckpt_dir}")
                raise
            bar.close()
            mean = float(np.mean(epoch_losses)) if epoch_losses else float("nan")
            self.history.append({"stage": stage, "epoch": epoch + 1, "loss": mean, "steps": len(epoch_losses),
                                 "seconds": round(time.monotonic() - t0, 1)})
            self.log(f"stage {stage} ({STAGE_NAMES[stage]}) epoch {epoch + 1}/{epochs}: loss {mean:.4f}")
            epoch_losses = []
            self._save(self._state(pos, epoch + 1, 0, opt, True, gstep, []))
        losses = [h["loss"] for h in self.history if h["stage"] == stage]
        self.stage_results.append(StageResult(stage=stage, epochs=epochs, steps=total, seconds=round(
            time.monotonic() - t0, 1), loss_first_epoch=losses[0] if losses else float("nan"),
            loss_last_epoch=losses[-1] if losses else float("nan"), pairs=len(rows_all), mining=mining_stats))
        self._save(self._state(pos + 1, 0, 0, None, False, 0, []))
        self.backend.train(False)


# ---- the entry point -------------------------------------------------------------------------------------------
def _fingerprint(*, pairs_digest: str, pool_digest: str | None, base: str, cfg: FinetuneConfig,
                 backend: dict[str, Any]) -> str:
    blob = json.dumps({"pairs": pairs_digest, "pool": pool_digest, "base": base, "config": cfg.as_dict(),
                       "backend": {k: backend[k] for k in ("backend", "trained", "augment", "bf16", "lora")
                                   if k in backend}},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def check_output_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber a finished model or an interrupted run by accident."""
    if resume and overwrite:
        raise TrainingError("--resume and --overwrite contradict each other: pick one")
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out} is a file; give a directory")
    if not out.is_dir() or resume:
        return
    if overwrite:
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
        return
    if (out / CHECKPOINT_DIR / STATE_FILE).is_file():
        raise TrainingError(f"{out} holds an interrupted run: pass --resume to continue it, or --overwrite to start "
                            "over")
    if any(out.iterdir()):
        raise TrainingError(f"{out} already exists and is not empty: pass --overwrite to replace it, or choose "
                            "another --out")


def finetune(
    pairs: Sequence[Pair],
    encoder: Any,
    out: str | os.PathLike[str],
    *,
    pool: Sequence[PoolDoc] = (),
    config: FinetuneConfig | None = None,
    parts: Sequence[str] | None = None,
    augment: bool = True,
    bf16: bool = True,
    text_cache: Path | None | bool = True,
    resume: bool = False,
    overwrite: bool = False,
    data_digests: tuple[str, str | None] | None = None,
    base_label: str | None = None,
    command: str | None = None,
    log: Callable[[str], None] = print,
    progress: bool | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    mini_only: Sequence[str] = (),
    lora_r: int | None = None,
    lora_alpha: float | None = None,
) -> FinetuneResult:
    """Fine-tune ``encoder`` (an :class:`~mmembed.Encoder`, or a name/path for ``load_encoder``) on ``pairs``
    and write a model directory to ``out`` (loadable with ``mmembed.load_encoder(out)``), a model card and a
    training summary beside it.

    ``parts``: what to train (:data:`mmembed.train.backends.PARTS`; default adapters + temperature).
    ``text_cache``: ``True`` for the shared on-disk cache of frozen-tower text embeddings, a path, or
    ``False``. ``data_digests``: (pairs file, pool file) hashes for the resume check (computed from the
    items when not given). ``on_step`` is called after every optimizer step (tests use it to interrupt).
    ``mini_only``: mmembed-mini-only options the caller set explicitly (refused by other backends);
    ``lora_r`` / ``lora_alpha``: LoRA rank and scale for transformers CLIP/SigLIP models (default 8 / 16).
    """
    from .backends import default_text_cache_path
    from .dispatch import backend_for

    t_start = time.monotonic()
    cfg = config or FinetuneConfig()
    out_dir = Path(out).expanduser()
    check_output_dir(out_dir, resume=resume, overwrite=overwrite)
    if isinstance(encoder, (str, os.PathLike)):
        from ..encoders.registry import load_encoder

        base_label = base_label or os.fspath(encoder)
        encoder = load_encoder(encoder, device="cpu")
    cache_path = default_text_cache_path() if text_cache is True else (text_cache or None)
    backend = backend_for(encoder, parts=tuple(parts) if parts else ("adapters", "temperature"), augment=augment,
                          bf16=bf16, text_cache=cache_path, mini_only=mini_only, lora_r=lora_r,
                          lora_alpha=lora_alpha)  # type: ignore[arg-type]
    if len(pairs) < 2:
        raise TrainingError(f"need at least 2 training pairs, got {len(pairs)}")
    data = build_training_data(pairs, pool)
    if data_digests is None:
        h = hashlib.sha256()
        for it, w in zip(data.items, data.where):
            h.update(item_key(it).encode())
        h.update(json.dumps([[p.id, p.concept, p.task, p.instruction] for p in pairs]).encode())
        data_digests = (h.hexdigest(), None)
    base_name = str(getattr(encoder, "name", type(encoder).__name__))
    fingerprint = _fingerprint(pairs_digest=data_digests[0], pool_digest=data_digests[1], base=base_name, cfg=cfg,
                               backend=backend.describe())
    log(f"{data.n_pairs} pairs ({', '.join(f'{k} {v}' for k, v in data.counts().items())}); pool of "
        f"{data.n_pool} documents; {len(data.instructions)} instruction phrasings")
    out_dir.mkdir(parents=True, exist_ok=True)
    backend.prepare(data.items, data.where, data.instructions, log)
    trainer = Finetuner(backend, data, cfg, out_dir, fingerprint=fingerprint, log=log, progress=progress,
                        on_step=on_step)
    # deterministic kernels: the backward of gathering repeated columns (docs_u[inverse]) accumulates with
    # index_put_(accumulate=True), which on CPU adds from several threads in whatever order they run, so two
    # runs of the same command differed in the last bits after one step and by several percent after six epochs
    deterministic, warn_only = torch.are_deterministic_algorithms_enabled(), \
        torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        stages = trainer.run(resume=resume)
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        close = getattr(getattr(backend, "cache", None), "close", None)
        if close is not None:
            close()
    trained = backend.describe()
    summary_cfg = {"base": base_label or base_name, "base_name": base_name, "config": cfg.as_dict(),
                   "trained": trained, "data": {"pairs": data.n_pairs, "pool": data.n_pool, "by_task": data.counts(),
                                                "instruction_phrasings": len(data.instructions)}}
    base_cfg = getattr(getattr(encoder, "model", None), "config", None)
    base_cfg = base_cfg if isinstance(base_cfg, dict) else {}  # a transformers config has no model_name
    model_name = str(base_cfg.get("model_name", "mmembed"))
    model_name = model_name if model_name.endswith("-ft") else model_name + "-ft"
    backend.save(out_dir, extra_config={"model_name": model_name, "finetuned_from": base_name,
                                        "finetune": {"stages": list(cfg.stages), "trained": list(trained["trained"])}})
    result = FinetuneResult(out=out_dir, stages=stages, seconds=time.monotonic() - t_start,
                            epoch_losses=trainer.history, data=summary_cfg["data"], trained=trained)
    summary = {**summary_cfg, "stages": [asdict(s) for s in stages], "epochs": trainer.history,
               "seconds": round(result.seconds, 1), "command": command}
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / CARD_FILE).write_text(model_card(summary))
    state = out_dir / CHECKPOINT_DIR / STATE_FILE
    if state.is_file():
        state.unlink()
    try:
        (out_dir / CHECKPOINT_DIR).rmdir()
    except OSError:
        pass
    log(f"wrote {out_dir} in {result.seconds / 60:.1f} min")
    return result


__all__ = ["FinetuneConfig", "FinetuneResult", "Finetuner", "StageResult", "TrainingData", "build_training_data",
           "batch_mask", "check_output_dir", "contrastive_loss", "false_negative_mask", "finetune", "model_card"]
