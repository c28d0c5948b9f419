"""Qwen3-VL-Embedding (2B / 8B, Apache-2.0) as an mmembed encoder, on transformers' own ``Qwen3VLModel``.

What the model card and the Qwen team's reference embedder do, and what this backend does the same way:

* **Prompt.** One chat per item: a ``system`` turn holding the instruction (a query's task instruction; the
  default ``"Represent the user's input."`` for documents and instruction-less queries; a full stop is added
  when the instruction does not end in punctuation), a ``user`` turn holding the item's parts **in their
  order** (each image as the model's vision placeholder, each text as text; an empty item as ``NULL``), then
  the generation prompt, rendered with the checkpoint's own chat template.
* **Images.** Resized by Qwen's rule (sides multiples of 32 = patch 16 x merge 2) between ``min_pixels`` and
  ``max_pixels`` -- the card's 4 x 32² and 1800 x 32² by default (4 to 1800 visual tokens per image) --
  with transformers' Pillow image processor; each image placeholder becomes ``t*h*w/4`` ``<|image_pad|>``
  tokens, as ``Qwen3VLProcessor`` expands them.
* **Pooling.** The last token's hidden state (right padding, so each row's last real token), L2-normalised.
* **Matryoshka.** ``dim=`` keeps the first ``dim`` coordinates (64 up to the full size), re-normalised.
* **Length.** ``max_length`` (8192 by default) counts every token; a longer item loses ordinary text tokens
  from the end of its content, never its image tokens, its special tokens or the chat template's tail.

Why this path and not sentence-transformers' (which also loads these checkpoints): ``Qwen3VLProcessor``
builds a video processor that needs torchvision, which many CPU installs (this project's included) cannot
import. This backend needs only the tokenizer, the Pillow image processor and the model, and a test proves it
gives the sentence-transformers vectors on the same weights (tests/test_qwen3_vl_st_equivalence.py).
A directory holding both ``config.json`` (``model_type`` ``qwen3_vl``) and ``modules.json`` therefore loads
here: for Qwen3-VL, config.json wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, ModelLoadError
from ..inputs import ImagePart, Interleaved, TextPart
from ._torch import resolve_device, resolve_dtype
from .base import Encoder, image_policy_from_kwargs

DEFAULT_INSTRUCTION = "Represent the user's input."
IMAGE_FACTOR = 32  # patch 16 x spatial merge 2
MIN_PIXELS = 4 * IMAGE_FACTOR * IMAGE_FACTOR
MAX_PIXELS = 1800 * IMAGE_FACTOR * IMAGE_FACTOR
MAX_LENGTH = 8192
MIN_MATRYOSHKA_DIM = 64
IMAGE_ITEM = "<|vision_start|><|image_pad|><|vision_end|>"


def with_full_stop(instruction: str) -> str:
    """The reference embedder's rule: an instruction not ending in punctuation gets a full stop."""
    instruction = instruction.strip()
    if instruction and not unicodedata.category(instruction[-1]).startswith("P"):
        instruction += "."
    return instruction


def defuse(text: str) -> str:
    """User text must not be read as a control token (``<|image_pad|>`` would claim an image slot)."""
    return text.replace("<|", "< |")


def item_content(item: Interleaved) -> list[dict[str, Any]]:
    """An item's parts as chat content, in order (images as ``{"type": "image"}``)."""
    content: list[dict[str, Any]] = []
    for part in item.parts:
        if isinstance(part, ImagePart):
            content.append({"type": "image"})
        elif isinstance(part, TextPart):
            content.append({"type": "text", "text": defuse(part.text)})
    return content or [{"type": "text", "text": "NULL"}]


class Qwen3VLImageTextProcessor:
    """Text + image inputs for Qwen3-VL without torchvision: the checkpoint's tokenizer and chat template,
    transformers' Pillow ``Qwen2VLImageProcessorPil``, and the image-token expansion ``Qwen3VLProcessor``
    performs. Called like a processor: ``proc(text=[...], images=[...], return_tensors="pt", padding=True)``.
    """

    def __init__(self, tokenizer: Any, image_processor: Any, chat_template: str | None, *,
                 min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS, max_length: int = MAX_LENGTH,
                 padding_side: str = "right") -> None:
        if min_pixels < 1 or max_pixels < min_pixels:
            raise ValueError(f"need 1 <= min_pixels <= max_pixels, got {min_pixels}, {max_pixels}")
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = padding_side
        self.image_processor = image_processor
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        if not self.chat_template:
            raise ModelLoadError("the checkpoint has no chat template (chat_template.jinja / chat_template.json)")
        self.min_pixels, self.max_pixels, self.max_length = int(min_pixels), int(max_pixels), int(max_length)
        self.cut_count = 0  # items truncated to max_length so far (the encoder reports them per batch)
        self.image_token = "<|image_pad|>"
        vocab = tokenizer.get_vocab()
        for tok in ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>"):
            if tok not in vocab:
                raise ModelLoadError(f"the tokenizer has no {tok} token; is this a Qwen3-VL checkpoint?")
        self.image_token_id = vocab["<|image_pad|>"]
        self.im_end_id = vocab["<|im_end|>"]
        self.merge = int(getattr(image_processor, "merge_size", 2))
        self.special_ids = set(tokenizer.all_special_ids) | {vocab[t] for t in vocab if t.startswith("<|")
                                                              and t.endswith("|>")}

    def render(self, messages: list[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=True)

    def images(self, images: Sequence[Any]) -> dict[str, torch.Tensor]:
        size = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
        out = self.image_processor(list(images), size=size, return_tensors="pt")
        return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}

    def _truncate(self, ids: list[int]) -> list[int]:
        """Keep every special token and the template tail; drop ordinary tokens from the end of the content."""
        if len(ids) <= self.max_length:
            return ids
        ends = [i for i, t in enumerate(ids) if t == self.im_end_id]
        cut = ends[-1] if ends else len(ids)
        head, tail = ids[:cut], ids[cut:]
        budget = self.max_length - len(tail) - sum(1 for t in head if t in self.special_ids)
        if budget < 0:
            raise InputError(f"an item needs {len(ids)} tokens for its images and prompt alone, more than "
                             f"max_length={self.max_length}; lower max_pixels or raise max_length")
        kept: list[int] = []
        ordinary = sum(1 for t in head if t not in self.special_ids)
        drop = ordinary - budget
        for t in reversed(head):
            if t not in self.special_ids and drop > 0:
                drop -= 1
                continue
            kept.append(t)
        return kept[::-1] + tail

    def __call__(self, text: Sequence[str], images: Sequence[Any] | None = None, return_tensors: str = "pt",
                 padding: bool = True, **_: Any) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        counts: list[int] = []
        if images:
            out.update(self.images(images))
            counts = (out["image_grid_thw"].prod(-1) // (self.merge ** 2)).tolist()
        rows: list[list[int]] = []
        k = 0
        for prompt in text:
            pieces = prompt.split(self.image_token)
            expanded = pieces[0]
            for piece in pieces[1:]:
                if k >= len(counts):
                    raise InputError("more image placeholders than images in a Qwen3-VL batch")
                expanded += self.image_token * counts[k] + piece
                k += 1
            full = self.tokenizer.encode(expanded, add_special_tokens=False)
            rows.append(self._truncate(full))
            self.cut_count += len(rows[-1]) < len(full)
        if k != len(counts):
            raise InputError("fewer image placeholders than images in a Qwen3-VL batch")
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            sl = slice(0, len(r)) if self.tokenizer.padding_side == "right" else slice(width - len(r), width)
            ids[i, sl] = torch.tensor(r, dtype=torch.long)
            mask[i, sl] = 1
        out["input_ids"], out["attention_mask"] = ids, mask
        # which positions are image tokens: the model's multimodal RoPE needs it (as the processor returns it)
        out["mm_token_type_ids"] = (ids == self.image_token_id).long() * mask
        return out


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's hidden state at its last real token (works for left and right padding)."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (positions * mask.long()).argmax(dim=-1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class Qwen3VLEncoder(Encoder):
    """Qwen3-VL-Embedding: instruction in the system turn, interleaved user content, last-token pooling."""

    def __init__(self, model: Any, processor: Qwen3VLImageTextProcessor, *, name: str, dim: int, full_dim: int,
                 default_instruction: str = DEFAULT_INSTRUCTION, image_policy: Any = None) -> None:
        self.model = model.eval()
        self.processor = processor
        self.full_dim = int(full_dim)
        self.dim = int(dim)
        self.name = name
        self.default_instruction = default_instruction
        self.max_text_tokens = processor.max_length  # the long-text rule (encoders/base.py): cut at max_length
        if image_policy is not None:
            self.image_policy = image_policy

    def messages(self, item: Interleaved, instruction: str | None) -> list[dict[str, Any]]:
        system = with_full_stop(instruction) if instruction else self.default_instruction
        return [{"role": "system", "content": [{"type": "text", "text": system}]},
                {"role": "user", "content": item_content(item)}]

    def prompt(self, item: Interleaved, instruction: str | None) -> str:
        return self.processor.render(self.messages(item, instruction))

    def _length_key(self, item: Interleaved) -> int | None:
        return sum(len(p.text) // 4 for p in item.parts if isinstance(p, TextPart)) + 256 * len(item.images)

    @torch.inference_mode()
    def _encode_batch(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool) -> torch.Tensor:
        prompts = [self.prompt(it, instruction if is_query else None) for it in items]
        images = [p.image for it in items for p in it.images]
        p = next(self.model.parameters())
        before = self.processor.cut_count
        batch = {k: v.to(p.device) for k, v in self.processor(text=prompts, images=images or None).items()}
        self._report_truncated(self.processor.cut_count - before, len(items), self.processor.max_length)
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(p.dtype)
        hidden = self.model(**batch).last_hidden_state
        return last_token(hidden, batch["attention_mask"])[:, : self.dim].float()


def _fingerprint(root: Path) -> str:
    """Config + a slice of each weight file: the same weights give the same name wherever they are stored,
    without reading gigabytes at every load."""
    h = hashlib.sha256((root / "config.json").read_bytes())
    for f in sorted(root.glob("*.safetensors")):
        size = f.stat().st_size
        with open(f, "rb") as fh:
            h.update(f.name.encode() + str(size).encode() + fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read())
    return h.hexdigest()[:12]


def check_dim(dim: int | None, full: int, what: str) -> int:
    if dim is None:
        return full
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise ModelLoadError(f"{what}: dim must be an integer, got {dim!r}")
    lo = min(MIN_MATRYOSHKA_DIM, full)
    if not lo <= dim <= full:
        raise ModelLoadError(f"{what} supports Matryoshka dims from {lo} to {full}; dim={dim} is not one of them")
    return dim


def load_weights(auto_class: Any, root: Path, *, device: str | None, dtype: str | None) -> Any:
    """``auto_class.from_pretrained(root)`` on the resolved device and dtype, from local files only; any failure
    is a ModelLoadError naming the directory. Shared by the embedding and the reranker loaders."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    try:
        model = auto_class.from_pretrained(root, local_files_only=True, dtype=dt)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{root}: cannot load the Qwen3-VL weights ({exc})") from exc
    return model.to(dev)


def load_parts(root: Path, *, padding_side: str, min_pixels: int, max_pixels: int, max_length: int
               ) -> tuple[Qwen3VLImageTextProcessor, dict[str, Any]]:
    """The checkpoint's config, tokenizer, chat template and Pillow image processor."""
    cfg_file = root / "config.json"
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{cfg_file}: cannot read it ({exc})") from exc
    if cfg.get("model_type") != "qwen3_vl":
        raise ModelLoadError(f"{root}: model_type {cfg.get('model_type')!r} is not qwen3_vl")
    from transformers import AutoTokenizer

    try:  # transformers 5: the Pillow image processor has its own class
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil,
        )
    except ImportError:  # transformers 4.x: the slow processor is the Pillow/numpy one
        from transformers import Qwen2VLImageProcessor as Qwen2VLImageProcessorPil

    try:
        tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(root, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the directory lacks a usable processor
        raise ModelLoadError(f"{root}: cannot load the tokenizer / image processor ({exc})") from exc
    template = None
    if (root / "chat_template.jinja").is_file():
        template = (root / "chat_template.jinja").read_text()
    elif (root / "chat_template.json").is_file():
        template = json.loads((root / "chat_template.json").read_text()).get("chat_template")
    processor = Qwen3VLImageTextProcessor(tokenizer, image_processor, template, padding_side=padding_side,
                                          min_pixels=min_pixels, max_pixels=max_pixels, max_length=max_length)
    return processor, cfg


def load_qwen3_vl(path: str | os.PathLike[str], *, device: str | None = None, dtype: str | None = None,
                  dim: int | None = None, instruction: str = DEFAULT_INSTRUCTION, min_pixels: int = MIN_PIXELS,
                  max_pixels: int = MAX_PIXELS, max_length: int = MAX_LENGTH, name: str | None = None,
                  **kwargs: Any) -> Qwen3VLEncoder:
    """Load a Qwen3-VL-Embedding directory. ``dim`` truncates (Matryoshka); ``instruction`` is the default
    system instruction (documents and instruction-less queries); ``min_pixels``/``max_pixels`` bound the image
    resolution; ``max_length`` the tokens per item."""
    policy = image_policy_from_kwargs(kwargs)
    if kwargs:
        raise TypeError(f"load_qwen3_vl() got unexpected options {sorted(kwargs)}")
    root = Path(path).expanduser()
    processor, cfg = load_parts(root, padding_side="right", min_pixels=min_pixels, max_pixels=max_pixels,
                                max_length=max_length)
    full = int(cfg.get("text_config", {}).get("hidden_size", 0))
    label = name or f"qwen3-vl-embedding:{root.resolve().name}"
    dim = check_dim(dim, full, label)
    if not list(root.glob("*.safetensors")):
        raise ModelLoadError(f"{root}: no *.safetensors weights; refusing to build a randomly initialised model")
    from transformers import AutoModel

    model = load_weights(AutoModel, root, device=device, dtype=dtype)
    if type(model).__name__ != "Qwen3VLModel":
        raise ModelLoadError(f"{root}: expected a Qwen3VLModel, transformers built {type(model).__name__}")
    enc_name = name or f"qwen3-vl-embedding@{_fingerprint(root)}"
    if dim != full:
        enc_name += f":dim{dim}"
    return Qwen3VLEncoder(model, processor, name=enc_name, dim=dim, full_dim=full,
                          default_instruction=instruction, image_policy=policy)


__all__ = ["DEFAULT_INSTRUCTION", "MAX_PIXELS", "MIN_PIXELS", "Qwen3VLEncoder", "Qwen3VLImageTextProcessor",
           "item_content", "last_token", "load_qwen3_vl", "with_full_stop"]
