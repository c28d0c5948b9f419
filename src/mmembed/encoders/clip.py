"""CLIP-family encoders loaded from a local directory: Hugging Face CLIP/SigLIP and open_clip.

Both backends share one fusion rule, the UniIR ``CLIP_SF`` score-fusion recipe, so an image+text item lands
in the same space as a text or an image:

* text only  -> the L2-normalised text embedding;
* image only -> the L2-normalised image embedding (several images: the normalised mean of their normalised
  embeddings);
* image+text -> normalised text embedding + normalised (mean) image embedding, summed (the base class
  normalises the sum).

Queries get their instruction prefixed to the text (``"{instruction} {text}"``), as UniIR does for M-BEIR.
An image-only query with an instruction uses the instruction alone as its text part, so the instruction
steers image queries too (UniIR's instruction-following CLIP_SF does the same: the query text *is* the
instruction). Documents never get an instruction.

Text is truncated to the model's own maximum length (``max_text_tokens``, mmembed's one rule for long text,
reported per batch: see :mod:`mmembed.encoders.base`). Very long texts are cut to a character budget before
tokenising (tokenising a megabyte only to keep 77 tokens is slow), with a check that the cut still yields
more tokens than the model keeps, so the result is the same as tokenising the whole text.

Images are preprocessed with Pillow/numpy only: Hugging Face models use their slow (PIL) image processors,
and open_clip models use :class:`PilPreprocess`, which reproduces open_clip's inference transform (resize,
center crop or pad, normalise) from the model's preprocess config without torchvision's transforms.
(open_clip itself still imports torchvision when it is imported, so the open_clip backend needs it
installed; see ``load_open_clip``.)
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ModelLoadError
from ..images import ImagePolicy
from ..inputs import Interleaved
from ._torch import resolve_device, resolve_dtype
from .base import Encoder, image_policy_from_kwargs

#: Characters kept per token the model can take before tokenising a long text (see ``bounded_text``).
CHARS_PER_TOKEN_BUDGET = 32

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


# ---------------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------------
def item_text(item: Interleaved, instruction: str | None) -> str | None:
    """The text side of an item for a CLIP-style model (``None`` when it has none).

    Text parts are joined with spaces (CLIP tokenizers collapse whitespace anyway); a query instruction is
    prefixed, and stands alone as the text of an image-only query.
    """
    text = " ".join(t.strip() for t in item.texts if t.strip())
    if instruction:
        return f"{instruction} {text}" if text else instruction
    return text or None


def bounded_text(text: str, max_tokens: int, count_tokens: Callable[[str], int]) -> str:
    """Cut ``text`` to a character budget when that provably keeps the first ``max_tokens`` tokens.

    ``count_tokens(head)`` must return how many tokens ``head`` gives (it may stop counting past
    ``max_tokens + 1``). If a cut head still gives more tokens than the model keeps, the tokens the model
    sees are unchanged; if not (text that is mostly whitespace or markup), the whole text is returned.
    """
    limit = max(1, max_tokens) * CHARS_PER_TOKEN_BUDGET
    if len(text) <= limit:
        return text
    head = text[:limit]
    if count_tokens(head) > max_tokens:
        return head
    return text


def weights_digest(files: Sequence[Path]) -> str:
    """SHA-256 over the weight files' bytes (names included), for a name that changes with the weights."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _check_kwargs(func: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise TypeError(f"{func}() got unexpected options {sorted(kwargs)}")


def _model_dir(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ModelLoadError(f"{p} is not a model directory")
    return p


class ClipFamilyEncoder(Encoder):
    """Two towers (text, image) in one space, fused the UniIR CLIP_SF way. Subclasses embed raw batches."""

    def __init__(self, *, name: str, dim: int, device: torch.device, dtype: torch.dtype,
                 image_policy: ImagePolicy, max_text_tokens: int) -> None:
        self.name = name
        self.dim = int(dim)
        self.device = device
        self.dtype = dtype
        self.image_policy = image_policy
        self.max_text_tokens = int(max_text_tokens)

    def _tokens_with_specials(self, text: str) -> int:
        """Tokens the model would read for ``text`` with its start/end markers (may stop counting just past
        the window); used to report truncation."""
        return 0

    @abstractmethod
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Raw (unnormalised) text embeddings ``(len(texts), dim)``, truncated to the model's length."""

    @abstractmethod
    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        """Raw (unnormalised) image embeddings ``(len(images), dim)`` of RGB PIL images."""

    def _encode_batch(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool) -> Any:
        instr = instruction if is_query else None
        texts: list[str] = []
        images: list[Image.Image] = []
        plan: list[tuple[int | None, list[int]]] = []
        for item in items:
            text = item_text(item, instr)
            t_idx = None
            if text is not None:
                t_idx = len(texts)
                texts.append(text)
            i_idx = []
            for part in item.images:
                i_idx.append(len(images))
                images.append(part.image)
            plan.append((t_idx, i_idx))
        self._report_truncated(sum(self._tokens_with_specials(t) > self.max_text_tokens for t in texts), len(texts))
        with torch.inference_mode():
            t_emb = F.normalize(self.embed_texts(texts).float(), dim=-1) if texts else None
            i_emb = F.normalize(self.embed_images(images).float(), dim=-1) if images else None
            out = torch.zeros(len(items), self.dim, dtype=torch.float32, device=self._out_device(t_emb, i_emb))
            for row, (t_idx, i_idx) in enumerate(plan):
                if t_idx is not None:
                    out[row] += t_emb[t_idx]  # type: ignore[index]
                if i_idx:
                    out[row] += F.normalize(i_emb[i_idx].mean(dim=0), dim=-1)  # type: ignore[index]
        return out

    @staticmethod
    def _out_device(*tensors: torch.Tensor | None) -> torch.device:
        for t in tensors:
            if t is not None:
                return t.device
        return torch.device("cpu")


# ---------------------------------------------------------------------------------------------------
# Hugging Face transformers CLIP / SigLIP
# ---------------------------------------------------------------------------------------------------
_HF_MODEL_TYPES = ("clip", "siglip", "siglip2")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model", "tokenizer.model")


def _hf_weight_files(path: Path) -> list[Path]:
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (path / single).is_file():
            return [path / single]
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).is_file():
            shards = sorted(set(json.loads((path / index).read_text()).get("weight_map", {}).values()))
            return [path / index] + [path / s for s in shards]
    return []


def _pooled(out: Any) -> torch.Tensor:
    """``get_*_features`` return a tensor in transformers 4.x and a pooled model output in 5.x."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        raise RuntimeError(f"unexpected feature output {type(out).__name__} (no pooler_output)")
    return pooled


class HFClipEncoder(ClipFamilyEncoder):
    """A transformers ``CLIPModel`` / ``SiglipModel`` / ``Siglip2Model`` with its tokenizer and PIL image processor."""

    backend = "hf-clip"

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, *, name: str, dim: int,
                 device: torch.device, dtype: torch.dtype, image_policy: ImagePolicy, max_text_tokens: int,
                 pad_to_max_length: bool) -> None:
        super().__init__(name=name, dim=dim, device=device, dtype=dtype, image_policy=image_policy,
                         max_text_tokens=max_text_tokens)
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        # SigLIP pools the last position and was trained on max_length padding: pad every text the same way
        # so a text's vector does not depend on the rest of its batch.
        self.pad_to_max_length = pad_to_max_length

    def _count_tokens(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False, truncation=True,
                             max_length=self.max_text_tokens + 1)["input_ids"]
        return len(ids)

    def _tokens_with_specials(self, text: str) -> int:
        return len(self.tokenizer(bounded_text(text, self.max_text_tokens, self._count_tokens), truncation=True,
                                  max_length=self.max_text_tokens + 1)["input_ids"])

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        texts = [bounded_text(t, self.max_text_tokens, self._count_tokens) for t in texts]
        enc = self.tokenizer(
            texts,
            padding="max_length" if self.pad_to_max_length else True,
            truncation=True,
            max_length=self.max_text_tokens,
            return_tensors="pt",
        )
        inputs = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        return _pooled(self.model.get_text_features(**inputs))

    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        feats = self.image_processor(images=images, return_tensors="pt")
        inputs: dict[str, torch.Tensor] = {}
        for key, value in feats.items():
            if not isinstance(value, torch.Tensor):
                continue
            value = value.to(self.device)
            inputs[key] = value.to(self.dtype) if value.is_floating_point() else value
        return _pooled(self.model.get_image_features(**inputs))


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def load_hf_clip(path: str | os.PathLike[str], *, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, **kwargs: Any) -> HFClipEncoder:
    """Load a transformers CLIP or SigLIP model from a local directory (never from a hub).

    The directory is what ``save_pretrained`` writes for the model, its tokenizer and its image processor
    (``config.json``, weights, ``tokenizer*.json``, ``preprocessor_config.json``). Images go through the
    slow, Pillow-based image processor, so torchvision is never needed. Options: ``image_policy`` /
    ``allow_remote`` / ``allow_private_addresses`` (see :class:`~mmembed.images.ImagePolicy`).
    """
    policy = image_policy_from_kwargs(kwargs)
    _check_kwargs("load_hf_clip", kwargs)
    root = _model_dir(path)
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(root, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means the directory is not usable
        raise ModelLoadError(f"{root}: cannot read config.json as a transformers config: {exc}") from exc
    model_type = getattr(config, "model_type", "")
    if model_type not in _HF_MODEL_TYPES:
        raise ModelLoadError(f"{root}: model_type {model_type!r} is not a CLIP/SigLIP model ({_HF_MODEL_TYPES})")
    weight_files = _hf_weight_files(root)
    if not weight_files:
        raise ModelLoadError(
            f"{root}: no weights found (looked for model.safetensors, pytorch_model.bin and their sharded "
            "index files); refusing to build a randomly initialised model"
        )
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    major = _transformers_major()
    try:
        model = AutoModel.from_pretrained(root, local_files_only=True,
                                          **({"dtype": dt} if major >= 5 else {"torch_dtype": dt}))
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{root}: cannot load the {model_type} model weights: {exc}") from exc
    model.to(dev).eval()
    # transformers 5 builds an empty tokenizer from config.json alone: insist on the saved tokenizer files
    if not any((root / f).is_file() for f in _TOKENIZER_FILES):
        raise ModelLoadError(
            f"{root}: no tokenizer files ({', '.join(_TOKENIZER_FILES)}); save the tokenizer beside the model "
            "with tokenizer.save_pretrained(dir)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"{root}: cannot load the tokenizer ({exc}); save it beside the model with "
            "tokenizer.save_pretrained(dir)"
        ) from exc
    try:
        slow = {"backend": "pil"} if major >= 5 else {"use_fast": False}
        image_processor = AutoImageProcessor.from_pretrained(root, local_files_only=True, **slow)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"{root}: cannot load the image processor ({exc}); save preprocessor_config.json beside the model "
            "with image_processor.save_pretrained(dir)"
        ) from exc

    text_cfg, vision_cfg = config.text_config, config.vision_config
    if model_type == "clip":
        text_dim = vision_dim = int(config.projection_dim)
    else:
        text_dim = int(getattr(text_cfg, "projection_size", None) or text_cfg.hidden_size)
        vision_dim = int(vision_cfg.hidden_size)
    if text_dim != vision_dim:
        raise ModelLoadError(f"{root}: text ({text_dim}) and image ({vision_dim}) embeddings differ in size")
    max_tokens = int(text_cfg.max_position_embeddings)
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < max_tokens:
        max_tokens = tok_max
    name = f"hf-clip:{root.resolve().name}@{weights_digest(weight_files)[:12]}"
    return HFClipEncoder(model, tokenizer, image_processor, name=name, dim=text_dim, device=dev, dtype=dt,
                         image_policy=policy, max_text_tokens=max_tokens,
                         pad_to_max_length=model_type.startswith("siglip"))


# ---------------------------------------------------------------------------------------------------
# open_clip
# ---------------------------------------------------------------------------------------------------
_PIL_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                 "random": Image.Resampling.BICUBIC}  # open_clip uses bicubic at inference for "random"


class PilPreprocess:
    """open_clip's inference image transform, reimplemented on Pillow + numpy (no torchvision).

    Follows the model's preprocess config: ``size`` (int or (h, w)), ``mean``/``std``, ``interpolation``
    (``bicubic``/``bilinear``), ``resize_mode`` (``shortest``: resize the short side then center-crop;
    ``longest``: resize the long side then center-pad with ``fill_color``; ``squash``: resize to the size)
    and ``fill_color``. Output matches open_clip's own transform on RGB images.
    """

    def __init__(self, size: int | Sequence[int] = 224, mean: Sequence[float] = (0.48145466, 0.4578275, 0.40821073),
                 std: Sequence[float] = (0.26862954, 0.26130258, 0.27577711), interpolation: str = "bicubic",
                 resize_mode: str = "shortest", fill_color: int = 0, **_ignored: Any) -> None:
        if isinstance(size, int):
            self.size = (size, size)
        else:
            s = tuple(int(x) for x in size)
            self.size = (s[0], s[0]) if len(s) == 1 else (s[-2], s[-1])
        mean = tuple(mean) if isinstance(mean, (list, tuple)) else (float(mean),) * 3
        std = tuple(std) if isinstance(std, (list, tuple)) else (float(std),) * 3
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        interpolation = interpolation or "bicubic"
        if interpolation not in _PIL_RESAMPLE:
            raise ModelLoadError(f"unsupported interpolation {interpolation!r}; expected bicubic or bilinear")
        self.resample = _PIL_RESAMPLE[interpolation]
        resize_mode = resize_mode or "shortest"
        if resize_mode not in ("shortest", "longest", "squash"):
            raise ModelLoadError(f"unsupported resize_mode {resize_mode!r}; expected shortest, longest or squash")
        self.resize_mode = resize_mode
        self.fill_color = int(fill_color)

    def _resize_keep_ratio(self, img: Image.Image, longest: bool) -> Image.Image:
        w, h = img.size
        th, tw = self.size
        rh, rw = h / th, w / tw
        ratio = max(rh, rw) if longest else min(rh, rw)
        return img.resize((round(w / ratio), round(h / ratio)), self.resample)

    def _center_crop_or_pad(self, img: Image.Image) -> Image.Image:
        th, tw = self.size
        w, h = img.size
        if tw > w or th > h:
            left, top = max(tw - w, 0) // 2, max(th - h, 0) // 2
            canvas = Image.new("RGB", (max(w, tw), max(h, th)), (self.fill_color,) * 3)
            canvas.paste(img, (left, top))
            img = canvas
            w, h = img.size
            if (w, h) == (tw, th):
                return img
        top = int(round((h - th) / 2.0))
        left = int(round((w - tw) / 2.0))
        return img.crop((left, top, left + tw, top + th))

    def resize_and_crop(self, img: Image.Image) -> Image.Image:
        th, tw = self.size
        if self.resize_mode == "squash":
            return img.resize((tw, th), self.resample)
        if self.resize_mode == "longest":
            return self._center_crop_or_pad(self._resize_keep_ratio(img, longest=True))
        if th == tw:  # shortest side to the size, the long side scaled and truncated to an int
            w, h = img.size
            if w <= h:
                new = (th, int(th * h / w))
            else:
                new = (int(th * w / h), th)
            img = img.resize(new, self.resample)
        else:
            img = self._resize_keep_ratio(img, longest=False)
        return self._center_crop_or_pad(img)

    def __call__(self, img: Image.Image) -> np.ndarray:
        """RGB PIL image -> float32 ``(3, h, w)`` array, normalised."""
        img = self.resize_and_crop(img)
        if img.mode != "RGB":
            img = img.convert("RGB")
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = (arr - self.mean) / self.std
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self(im) for im in images]))


_OPEN_CLIP_WEIGHTS_ORDER = (
    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
)


def _open_clip_weight_file(path: Path) -> Path | None:
    """The checkpoint open_clip's ``local-dir:`` loader picks: preferred names first, safetensors first."""
    for name in _OPEN_CLIP_WEIGHTS_ORDER:
        if (path / name).is_file():
            return path / name
    found = sorted((p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pth")),
                   key=lambda p: (p.suffix != ".safetensors", p.name))
    return found[0] if found else None


_PRECISION = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


class OpenClipEncoder(ClipFamilyEncoder):
    """An open_clip model built by open_clip's factory, with Pillow/numpy preprocessing."""

    backend = "open_clip"

    def __init__(self, model: Any, tokenizer: Any, preprocess: PilPreprocess, *, name: str, dim: int,
                 device: torch.device, dtype: torch.dtype, image_policy: ImagePolicy, max_text_tokens: int) -> None:
        super().__init__(name=name, dim=dim, device=device, dtype=dtype, image_policy=image_policy,
                         max_text_tokens=max_text_tokens)
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess

    def _count_tokens(self, text: str) -> int:
        encode = getattr(self.tokenizer, "encode", None)
        if callable(encode):  # open_clip's SimpleTokenizer: content tokens, no start/end markers
            return len(encode(text)) + 2
        hf = getattr(self.tokenizer, "tokenizer", None)
        if hf is not None:  # open_clip's HFTokenizer wraps a transformers tokenizer
            return len(hf(text, truncation=True, max_length=self.max_text_tokens + 1)["input_ids"])
        return 0  # unknown tokenizer: tokenise the whole text

    def _tokens_with_specials(self, text: str) -> int:
        return self._count_tokens(bounded_text(text, self.max_text_tokens, self._count_tokens))

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        texts = [bounded_text(t, self.max_text_tokens, self._count_tokens) for t in texts]
        tokens = self.tokenizer(texts, context_length=self.max_text_tokens)
        return self.model.encode_text(tokens.to(self.device))

    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = self.preprocess.batch(images).to(self.device, self.dtype)
        return self.model.encode_image(pixels)


def _check_hf_text_tower_is_local(root: Path, model_cfg: dict[str, Any]) -> None:
    """open_clip builds a Hugging Face text tower from its config by hub id: insist that it is on disk."""
    hf_name = (model_cfg.get("text_cfg") or {}).get("hf_model_name")
    if not hf_name or Path(hf_name).is_dir():
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(hf_name, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"{root}: the text tower is the Hugging Face model {hf_name!r}, whose config is not on this machine "
            f"({type(exc).__name__}); mmembed never downloads. Save that model's config to a directory and set "
            "text_cfg.hf_model_name in open_clip_config.json to that directory."
        ) from exc


def load_open_clip(path: str | os.PathLike[str], *, device: str | torch.device | None = None,
                   dtype: str | torch.dtype | None = None, **kwargs: Any) -> OpenClipEncoder:
    """Load an open_clip model from a local directory: ``open_clip_config.json`` plus weights.

    That is the layout open_clip's hub export writes (``{"model_cfg": ..., "preprocess_cfg": ...}`` and
    ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``); models whose tokenizer is a Hugging
    Face one keep its files in the same directory. The model is built by open_clip's own factory
    (``local-dir:`` schema, so nothing is fetched); images are preprocessed by :class:`PilPreprocess`.

    open_clip is an optional dependency that itself imports torchvision: ``pip install open-clip-torch``
    in an environment where torchvision matches torch.
    """
    policy = image_policy_from_kwargs(kwargs)
    _check_kwargs("load_open_clip", kwargs)
    root = _model_dir(path)
    cfg_file = root / "open_clip_config.json"
    try:
        cfg = json.loads(cfg_file.read_text())
        model_cfg = cfg["model_cfg"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{cfg_file}: not a valid open_clip config with a 'model_cfg' entry ({exc})") from exc
    weights = _open_clip_weight_file(root)
    if weights is None:
        raise ModelLoadError(
            f"{root}: no open_clip weights found (looked for {', '.join(_OPEN_CLIP_WEIGHTS_ORDER[:3])}, ...); "
            "refusing to build a randomly initialised model"
        )
    _check_hf_text_tower_is_local(root, model_cfg)
    try:
        import open_clip
    except ImportError as exc:
        raise ModelLoadError(
            f"{root} is an open_clip model but open_clip cannot be imported ({exc}). Install it with "
            "`pip install open-clip-torch` (it needs a torchvision that matches your torch), or convert the "
            "model to a transformers CLIP directory."
        ) from exc
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if dt not in _PRECISION:
        raise ModelLoadError(f"open_clip models support float32, float16 and bfloat16, not {dt}")
    spec = f"local-dir:{root}"
    try:
        model = open_clip.create_model(spec, device=dev, precision=_PRECISION[dt])
        tokenizer = open_clip.get_tokenizer(spec)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{root}: open_clip could not build the model: {exc}") from exc
    model.eval()
    pre_cfg = dict(open_clip.get_model_preprocess_cfg(model) or {})
    if not pre_cfg:
        pre_cfg = {"size": model_cfg.get("vision_cfg", {}).get("image_size", 224), **cfg.get("preprocess_cfg", {})}
    preprocess = PilPreprocess(**pre_cfg)
    text_cfg = model_cfg.get("text_cfg") or {}
    max_tokens = int(getattr(tokenizer, "context_length", None) or text_cfg.get("context_length", 77))
    dim = int(model_cfg["embed_dim"])
    name = f"open_clip:{root.resolve().name}@{weights_digest([weights])[:12]}"
    return OpenClipEncoder(model, tokenizer, preprocess, name=name, dim=dim, device=dev, dtype=dt,
                           image_policy=policy, max_text_tokens=max_tokens)
