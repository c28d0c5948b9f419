"""What ``mmembed train`` can fine-tune, per encoder backend, behind one small interface.

A :class:`TrainableBackend` sees the training data once (:meth:`~TrainableBackend.prepare`: every distinct
query/document item and instruction), then embeds items by index, differentiably, as queries or documents,
and saves a model directory ``mmembed.load_encoder`` reads.

* ``mini`` (the default ``mmembed-mini``): the text tower is frozen by design (its space *is* the shared
  space, and text->text quality must not regress), so the trainable parts are the task-conditioned
  **query adapter** (``v + A([v, e_instruction])``: the instruction can move a text query towards images and
  away from texts), the **document adapter**, the temperature, and optionally the **image tower**. Text and
  instruction embeddings are computed once (and cached on disk per text: the tower never changes); images
  are decoded once into a uint8 bank; with the image tower frozen its embeddings are computed once too, so
  an epoch over ~20k pairs takes seconds on a CPU.
* ``hf-clip`` (transformers CLIP / SigLIP / SigLIP2 directories): LoRA adapters through ``peft`` on the
  attention projections of both towers, plus the temperature; merged into the weights on save
  (:mod:`mmembed.train.lora`).

:func:`mmembed.train.dispatch.backend_for` picks the backend for a loaded encoder (in its own module, so this one
and :mod:`mmembed.train.lora`, which builds on it, do not import each other).
* MM-Embed (an 8B LLaVA-NeXT model: it needs a GPU) and open_clip are refused with a message saying so,
  before any work is done.
"""

from __future__ import annotations

import hashlib
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MMEmbedError
from ..images import DEFAULT_POLICY, ImagePolicy
from ..inputs import Interleaved

#: What can be trained, by name (``--train``).
PARTS = ("adapters", "image-tower", "temperature")


class TrainingError(MMEmbedError):
    """Fine-tuning cannot run as asked (unsupported backend, bad option, mismatched checkpoint)."""


class TrainableBackend(ABC):
    """The model-specific half of fine-tuning (see the module docstring)."""

    #: short backend key recorded in checkpoints and the model card
    kind: str = ""

    @abstractmethod
    def prepare(self, items: Sequence[Interleaved], where: Sequence[str], instructions: Sequence[str],
                log: Callable[[str], None]) -> None:
        """See every item and instruction once (decode, cache); errors name ``where[i]``."""

    @abstractmethod
    def embed(self, items: torch.Tensor, instructions: torch.Tensor | None, *, is_query: bool,
              generator: torch.Generator | None = None, adapt: bool = True) -> torch.Tensor:
        """L2-normalised ``(n, dim)`` embeddings of prepared items (by index); ``instructions`` holds an index
        into the prepared instructions per row, ``-1`` for none. In training mode it is differentiable and
        may augment images with ``generator``. ``adapt=False``: the towers' output before any trainable
        adapter (the anchor that text documents and uninstructed queries are kept near)."""

    @abstractmethod
    def parameter_groups(self, lr: float, image_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups of the trainable parts."""

    @abstractmethod
    def state_dict(self) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...

    @abstractmethod
    def train(self, mode: bool = True) -> None: ...

    @abstractmethod
    def save(self, out: Path, *, extra_config: dict[str, Any]) -> Path:
        """Write a model directory ``mmembed.load_encoder(out)`` reads."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What is trained and how (for the model card and the summary)."""

    def after_step(self) -> None:
        """Called after each optimizer step (clamps, caches to invalidate)."""


# ---- text embedding cache ------------------------------------------------------------------------------
class TextCache:
    """Embeddings of a frozen text tower, kept in SQLite by (tower, text hash) so reruns skip the tower.

    The tower never changes (it is frozen and pinned by its package), so a cached vector stays valid; the
    file lives in the mmembed cache (``MMEMBED_CACHE``) and can be deleted at any time.
    """

    def __init__(self, path: Path | None, tower_key: str) -> None:
        self.tower_key = tower_key
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=30)
            self._db.execute("CREATE TABLE IF NOT EXISTS vec (tower TEXT, hash TEXT, dim INTEGER, data BLOB, "
                             "PRIMARY KEY (tower, hash))")

    @staticmethod
    def _hash(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def get_many(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if self._db is None or not texts:
            return {}
        found: dict[str, np.ndarray] = {}
        by_hash = {self._hash(t): t for t in texts}
        keys = list(by_hash)
        for s in range(0, len(keys), 500):
            chunk = keys[s:s + 500]
            rows = self._db.execute(
                f"SELECT hash, dim, data FROM vec WHERE tower = ? AND hash IN ({','.join('?' * len(chunk))})",
                [self.tower_key, *chunk]).fetchall()
            for h, dim, data in rows:
                found[by_hash[h]] = np.frombuffer(data, dtype=np.float32).reshape(dim).copy()
        return found

    def put_many(self, texts: Sequence[str], vecs: np.ndarray) -> None:
        if self._db is None or not texts:
            return
        rows = [(self.tower_key, self._hash(t), int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes())
                for t, v in zip(texts, vecs)]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?, ?, ?)", rows)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def default_text_cache_path() -> Path:
    from ..data.fetch import cache_dir

    return cache_dir() / "text-embeddings.sqlite"


def _batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    for s in range(0, n, size):
        yield s, min(s + size, n)


# ---- mmembed-mini ----------------------------------------------------------------------------------------
class MiniBackend(TrainableBackend):
    """Fine-tunes an ``mmembed-mini`` model (see the module docstring for what and why).

    Options: ``parts`` (subset of :data:`PARTS`), ``augment`` (random resized crop/flip/jitter of images
    while the image tower trains), ``bf16`` (autocast for the image tower), ``text_cache`` (SQLite file or
    None), ``image_policy`` (how image files/URLs are read).
    """

    kind = "mini"

    def __init__(self, encoder: Any, *, parts: Sequence[str] = ("adapters", "temperature"), augment: bool = True,
                 bf16: bool = True, text_cache: Path | None = None, image_policy: ImagePolicy | None = None,
                 text_batch: int = 128, image_batch: int = 256) -> None:
        from ..encoders.mini import MiniEncoder

        if not isinstance(encoder, MiniEncoder):
            raise TrainingError(f"MiniBackend needs an mmembed-mini encoder, got {type(encoder).__name__}")
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            raise TrainingError(f"unknown trainable part(s) {unknown}; choose from {', '.join(PARTS)}")
        if not parts:
            raise TrainingError("nothing to train: give at least one of " + ", ".join(PARTS))
        self.encoder = encoder
        self.model = encoder.model
        self.model.float()
        self.parts = tuple(p for p in PARTS if p in parts)
        self.augment = augment
        self.bf16 = bf16
        self.policy = image_policy or getattr(encoder, "image_policy", DEFAULT_POLICY)
        self.text_batch = text_batch
        self.image_batch = image_batch
        tower = self.model.text_tower
        self.cache = TextCache(text_cache, f"{tower.kind}:{tower.dim}")
        for name, p in self.model.named_parameters():
            p.requires_grad_(self._trainable(name))
        # filled by prepare()
        self.text_table = torch.zeros((0, self.model.dim))
        self.item_text: torch.Tensor = torch.zeros(0, dtype=torch.long)
        self.instr_rows: torch.Tensor = torch.zeros(0, dtype=torch.long)
        self.bank = np.zeros((0, self.model.image_size, self.model.image_size, 3), dtype=np.uint8)
        self.item_images: list[list[int]] = []
        self._image_table: torch.Tensor | None = None

    def _trainable(self, name: str) -> bool:
        if name.startswith(("query_adapter.", "doc_adapter.")):
            return "adapters" in self.parts
        if name.startswith("image_tower."):
            return "image-tower" in self.parts
        if name == "logit_scale":
            return "temperature" in self.parts
        return False

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.model.logit_scale

    # ---- preparation ----------------------------------------------------------------------------------
    def _embed_texts(self, texts: list[str], log: Callable[[str], None]) -> torch.Tensor:
        if not texts:
            return torch.zeros((0, self.model.dim))
        cached = self.cache.get_many(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in cached))
        if missing:
            log(f"embedding {len(missing)} texts with the frozen text tower ({len(texts) - len(missing)} cached)")
            from ..progress import progress

            with progress(len(missing), "text tower", "text", leave=False) as bar:
                for s, e in _batches(len(missing), self.text_batch):
                    chunk = missing[s:e]
                    vecs = self.model.text_tower.encode(chunk).numpy().astype(np.float32)
                    self.cache.put_many(chunk, vecs)
                    cached.update(zip(chunk, vecs))
                    bar.update(len(chunk))
        return torch.from_numpy(np.stack([cached[t] for t in texts]))

    def prepare(self, items: Sequence[Interleaved], where: Sequence[str], instructions: Sequence[str],
                log: Callable[[str], None]) -> None:
        from ..encoders.mini import image_to_array

        texts: dict[str, int] = {}
        item_text = []
        for it in items:
            t = it.text if it.texts and it.text.strip() else None
            item_text.append(-1 if t is None else texts.setdefault(t, len(texts)))
        instr_rows = [texts.setdefault(t, len(texts)) for t in instructions]
        text_list = list(texts)
        self.text_table = self._embed_texts(text_list, log)
        self.item_text = torch.tensor(item_text, dtype=torch.long)
        self.instr_rows = torch.tensor(instr_rows, dtype=torch.long)
        # images: decode once into a uint8 bank (deduplicated by location/bytes)
        size = self.model.image_size
        arrays, self.item_images = decode_images(items, where, self.policy, lambda img: image_to_array(img, size))
        self.bank = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), dtype=np.uint8)
        self._image_table = None
        log(f"prepared {len(items)} items: {len(text_list)} distinct texts, {len(arrays)} distinct images")

    # ---- embedding ------------------------------------------------------------------------------------
    def _pixels(self, rows: Sequence[int]) -> torch.Tensor:
        from ..encoders.mini import arrays_to_tensor

        return arrays_to_tensor(self.bank[np.asarray(rows, dtype=np.int64)])

    def _tower(self, pix: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            emb = self.model.image_tower(pix)
        return F.normalize(emb.float(), dim=-1)

    def image_table(self) -> torch.Tensor:
        """Embeddings of every banked image with the current (eval-mode) image tower, cached until it trains."""
        if self._image_table is None:
            was = self.model.image_tower.training
            self.model.image_tower.eval()
            out = torch.zeros((len(self.bank), self.model.dim))
            with torch.no_grad():
                for s, e in _batches(len(self.bank), self.image_batch):
                    out[s:e] = self._tower(self._pixels(range(s, e)))
            self.model.image_tower.train(was)
            self._image_table = out
        return self._image_table

    def _image_embeddings(self, rows: list[int], generator: torch.Generator | None) -> torch.Tensor:
        training = "image-tower" in self.parts and self.model.image_tower.training
        if not training:
            return self.image_table()[torch.tensor(rows, dtype=torch.long)]
        pix = self._pixels(rows)
        if self.augment and generator is not None:
            from .mini import augment

            pix = augment(pix, generator, min_scale=0.7, jitter=0.1)
        return self._tower(pix)

    def embed(self, items: torch.Tensor, instructions: torch.Tensor | None, *, is_query: bool,
              generator: torch.Generator | None = None, adapt: bool = True) -> torch.Tensor:
        m = self.model
        idx = items.tolist()
        out = torch.zeros((len(idx), m.dim))
        trow = self.item_text[items]
        has_text = trow >= 0
        if bool(has_text.any()):
            out[has_text] = self.text_table[trow[has_text]]
        owners = [i for i, it in enumerate(idx) for _ in self.item_images[it]]
        if owners:
            rows = [r for it in idx for r in self.item_images[it]]
            # each distinct image once per call
            uniq = sorted(set(rows))
            pos = {r: k for k, r in enumerate(uniq)}
            emb = self._image_embeddings(uniq, generator)[torch.tensor([pos[r] for r in rows])]
            sums = torch.zeros_like(out).index_add(0, torch.tensor(owners), emb)
            has_img = torch.zeros(len(idx), dtype=torch.bool)
            has_img[torch.tensor(owners)] = True
            # t + w * i for items with text and images, i alone for image-only items (as the encoder does)
            w = torch.where(has_text, m.image_weight, 1.0)[:, None]
            out = out + torch.where(has_img[:, None], w * F.normalize(sums, dim=-1), torch.zeros_like(sums))
        else:
            has_img = torch.zeros(len(idx), dtype=torch.bool)
        out = F.normalize(out, dim=-1)
        if not adapt:
            return out
        if is_query:
            e = torch.zeros_like(out)
            if instructions is not None:
                has = instructions >= 0
                if bool(has.any()):
                    e[has] = self.text_table[self.instr_rows[instructions[has]]]
            adapted = m.query_adapter(out, e)
        else:
            # as the encoder: only documents holding an image pass the document adapter
            adapted = torch.where(has_img[:, None], m.doc_adapter(out, None), out)
        return F.normalize(adapted, dim=-1)

    # ---- optimisation and state -------------------------------------------------------------------------
    def parameter_groups(self, lr: float, image_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        m = self.model
        groups: list[dict[str, Any]] = []
        if "adapters" in self.parts:
            ad = [*m.query_adapter.parameters(), *m.doc_adapter.parameters()]
            groups.append({"params": [p for p in ad if p.dim() > 1], "lr": lr, "weight_decay": weight_decay})
            groups.append({"params": [p for p in ad if p.dim() <= 1], "lr": lr, "weight_decay": 0.0})
        if "image-tower" in self.parts:
            it = list(m.image_tower.parameters())
            groups.append({"params": [p for p in it if p.dim() > 1], "lr": image_lr, "weight_decay": weight_decay})
            groups.append({"params": [p for p in it if p.dim() <= 1], "lr": image_lr, "weight_decay": 0.0})
        if "temperature" in self.parts:
            groups.append({"params": [m.logit_scale], "lr": lr, "weight_decay": 0.0})
        return [g for g in groups if g["params"]]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
        self._image_table = None

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)
        # BatchNorm keeps its running statistics: fine-tuning batches mix a few images with many texts and
        # would skew them; the image tower still learns through its weights.
        for mod in self.model.image_tower.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.eval()
        if mode and "image-tower" in self.parts:
            self._image_table = None

    def after_step(self) -> None:
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, float(np.log(100.0)))
        if "image-tower" in self.parts:
            self._image_table = None

    def save(self, out: Path, *, extra_config: dict[str, Any]) -> Path:
        """Save in the base checkpoint's weight dtype (the shipped model is float16), then load the stored
        weights back, so the model in memory is exactly the one on disk (same vectors either way)."""
        from safetensors.torch import load_file

        from ..encoders.mini import WEIGHTS_FILE

        dtype = getattr(torch, str(self.model.config.get("weights_dtype", "float32")), torch.float32)
        self.model.image_tower.to(memory_format=torch.contiguous_format)
        path = self.model.save(out, dtype=dtype, extra_config=extra_config)
        stored = load_file(str(Path(path) / WEIGHTS_FILE))
        own = self.model.state_dict()
        self.model.load_state_dict({k: v.to(own[k].dtype) for k, v in stored.items()})
        self._image_table = None
        return path

    def describe(self) -> dict[str, Any]:
        m = self.model
        n = {name: sum(p.numel() for p in mod.parameters()) for name, mod in
             (("query_adapter", m.query_adapter), ("doc_adapter", m.doc_adapter), ("image_tower", m.image_tower))}
        return {"backend": self.kind, "trained": list(self.parts), "parameters": n,
                "text_tower": f"{m.text_tower.kind} (frozen)", "augment": self.augment, "bf16": self.bf16}


def _image_key(part: Any) -> str:
    if part.uri is not None:
        return "U" + part.uri
    if part.data is not None:
        return "B" + hashlib.sha1(part.data).hexdigest()
    return "P" + str(id(part.pil))


# ---- dispatch ----------------------------------------------------------------------------------------------
def decode_images(items: Sequence[Interleaved], where: Sequence[str], policy: ImagePolicy,
                  convert: Callable[[Any], Any]) -> tuple[list[Any], list[list[int]]]:
    """Decode every distinct image of ``items`` once (deduplicated by location or bytes) and ``convert`` it
    (PIL image -> whatever the backend keeps); returns the converted images and, per item, the indices of its
    images in order. An unreadable image raises :class:`ImageLoadError` naming ``where[i]``."""
    from ..errors import ImageLoadError
    from ..progress import progress

    keys: dict[str, int] = {}
    out: list[Any] = []
    per_item: list[list[int]] = []
    n_img = sum(len(it.images) for it in items)
    with progress(n_img, "decoding images", "image", min_total=200, leave=False) as bar:
        for it, w in zip(items, where):
            rows = []
            for part in it.images:
                key = _image_key(part)
                if key not in keys:
                    try:
                        img = part.load(policy).image
                    except ImageLoadError as exc:
                        raise ImageLoadError(f"{w}: {exc}") from None
                    out.append(convert(img))
                    part.unload()
                    keys[key] = len(out) - 1
                rows.append(keys[key])
                bar.update(1)
            per_item.append(rows)
    return out, per_item


__all__ = ["PARTS", "MiniBackend", "TextCache", "TrainableBackend", "TrainingError", "decode_images",
           "default_text_cache_path"]
