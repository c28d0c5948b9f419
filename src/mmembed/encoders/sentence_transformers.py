"""Any sentence-transformers model as an mmembed encoder: text models, CLIP models, multimodal chat models.

Everything that sentence-transformers does is left to it (tokenising, image processing, chat templates,
pooling, batching, ``truncate_dim``); this module only maps mmembed's inputs and task instructions onto its
``encode_query`` / ``encode_document``:

* **Inputs.** A text-only item is a string, an image-only item with one image is a PIL image. Any other item
  (image + text, several images, interleaved parts) goes, for models that take chat messages (``"message"``
  in ``model.modalities``, e.g. Qwen3-VL-Embedding), as one user message whose content lists the parts in
  their order; for other models as ST's ``{"text": ..., "image": ...}`` dict when the model supports that
  combination, and is refused with an :class:`~mmembed.errors.InputError` otherwise (a CLIP model embeds a
  text or an image, not both).
* **Instructions.** Documents use the model's ``"document"`` prompt when it has one (``encode_document``).
  A query with a task instruction: for message models the instruction is the system turn (``prompt=``);
  for text models whose ``"query"`` prompt is an ``Instruct: ...\\nQuery:`` template, the instruction
  replaces the template's; for text models with another ``"query"`` prompt (``"query: "``, BGE's sentence)
  that prompt is used and the instruction is not (those models were not trained with free instructions);
  a model with no query prompt gets ``Instruct: {instruction}\\nQuery: ``. Without an instruction a query
  uses the model's ``"query"`` prompt (``encode_query``).
* **Matryoshka.** ``dim=`` becomes sentence-transformers' ``truncate_dim``; it must not exceed the model's
  dimension. The encoder's name then records the dim, so a collection built at one dim refuses another.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelLoadError
from ..inputs import ImagePart, Interleaved, TextPart
from ._torch import resolve_device, resolve_dtype
from .base import Encoder, image_policy_from_kwargs

_INSTRUCT = re.compile(r"Instruct:\s*(.*?)\n", re.S)


def query_prompt(prompts: dict[str, str], instruction: str | None, *, messages: bool) -> dict[str, Any]:
    """``encode_query`` keyword arguments for ``instruction`` (see the module docstring)."""
    if not instruction:
        return {}
    if messages:
        return {"prompt": instruction}
    template = prompts.get("query")
    if template is None:
        return {"prompt": f"Instruct: {instruction}\nQuery: "}
    if _INSTRUCT.search(template):
        return {"prompt": _INSTRUCT.sub(lambda _: f"Instruct: {instruction}\n", template, count=1)}
    return {"prompt_name": "query"}


class SentenceTransformerEncoder(Encoder):
    """A ``sentence_transformers.SentenceTransformer`` behind mmembed's Encoder protocol."""

    def __init__(self, model: Any, *, name: str, dim: int, image_policy: Any = None) -> None:
        self.model = model
        self.name = name
        self.dim = int(dim)
        if image_policy is not None:
            self.image_policy = image_policy
        self.modalities = list(model.modalities)
        self.messages = "message" in self.modalities

    def to_input(self, item: Interleaved) -> Any:
        parts = item.parts
        if all(isinstance(p, TextPart) for p in parts):
            return item.text
        if len(parts) == 1 and isinstance(parts[0], ImagePart):
            if not self.model.supports("image") and not self.messages:
                raise InputError(f"{self.name} embeds text only; it cannot read the image {parts[0].describe()}")
            return parts[0].image
        if self.messages:
            content = [{"type": "image", "image": p.image} if isinstance(p, ImagePart)
                       else {"type": "text", "text": p.text} for p in parts]
            return [{"role": "user", "content": content}]
        if len(item.images) == 1 and self.model.supports(("image", "text")):
            return {"text": item.text, "image": item.images[0].image}
        raise InputError(f"{self.name} embeds a text or an image, not an item mixing them "
                         f"({item.modality}, {len(item.images)} image(s)); split the item or use a "
                         "multimodal model (e.g. Qwen3-VL-Embedding)")

    @property
    def max_text_tokens(self) -> int | None:  # type: ignore[override]
        """sentence-transformers truncates text to ``max_seq_length`` (mmembed's long-text rule)."""
        value = getattr(self.model, "max_seq_length", None)
        return int(value) if isinstance(value, int) and value > 0 else None

    def _count_cut(self, texts: list[str]) -> int:
        """How many plain texts the model's tokenizer cuts at ``max_seq_length`` (prompts not counted)."""
        limit, tok = self.max_text_tokens, getattr(self.model, "tokenizer", None)
        if not texts or limit is None or not callable(tok):
            return 0
        try:
            ids = tok(texts, truncation=True, max_length=limit + 1)["input_ids"]
        except Exception:  # noqa: BLE001 - a processor that is not a text tokenizer: nothing to report
            return 0
        return sum(len(r) > limit for r in ids)

    def _encode_batch(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool) -> Any:
        inputs = [self.to_input(it) for it in items]
        texts = [x for x in inputs if isinstance(x, str)]
        self._report_truncated(self._count_cut(texts), len(texts))
        common = {"convert_to_numpy": True, "show_progress_bar": False, "normalize_embeddings": False}
        extra = query_prompt(self.model.prompts, instruction, messages=self.messages) if is_query else {}
        encode = self.model.encode_query if is_query else self.model.encode_document
        # models without chat messages (CLIP) take one modality per call: group, encode, put back in order
        groups: dict[str, list[int]] = {}
        for i, x in enumerate(inputs):
            kind = "text" if isinstance(x, str) else "dict" if isinstance(x, dict) else \
                "message" if isinstance(x, list) else "image"
            groups.setdefault(kind, []).append(i)
        out = np.zeros((len(inputs), self.dim), dtype=np.float32)
        for idx in groups.values():
            out[idx] = encode([inputs[i] for i in idx], batch_size=len(idx), **extra, **common)
        return out


def _fingerprint(root: Path | None, model: Any) -> str:
    """Stable across machines for the same weights: file bytes when local, else the parameters."""
    h = hashlib.sha256()
    files = sorted(root.rglob("*.safetensors")) if root is not None else []
    if files:
        for f in files:
            size = f.stat().st_size
            with open(f, "rb") as fh:
                h.update(f.relative_to(root).as_posix().encode() + str(size).encode() + fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                h.update(fh.read())
    else:
        for n, p in model.state_dict().items():
            h.update(n.encode() + p.detach().float().cpu().numpy().tobytes()[:4096])
    return h.hexdigest()[:12]


def load_sentence_transformer(path: str | os.PathLike[str], *, device: str | None = None, dtype: str | None = None,
                              dim: int | None = None, name: str | None = None, **kwargs: Any
                              ) -> SentenceTransformerEncoder:
    """Load a local SentenceTransformer directory (hub names come through :mod:`mmembed.hub` first).
    ``dim`` truncates (Matryoshka models); other options: ``image_policy`` / ``allow_remote``."""
    policy = image_policy_from_kwargs(kwargs)
    if kwargs:
        raise TypeError(f"load_sentence_transformer() got unexpected options {sorted(kwargs)}")
    root = Path(path).expanduser()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ModelLoadError("the sentence-transformers backend needs sentence-transformers >= 5.4") from exc
    dev = resolve_device(device)
    model_kwargs = {"dtype": resolve_dtype(dtype, dev)} if dtype is not None or dev.type != "cpu" else None
    try:
        model = SentenceTransformer(str(root), device=str(dev), local_files_only=True, model_kwargs=model_kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure means the directory is not a usable model
        raise ModelLoadError(f"cannot load {root} as a sentence-transformers model: {exc}") from exc
    full = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else \
        model.get_sentence_embedding_dimension()
    if not full:
        raise ModelLoadError(f"{root}: the model does not report its embedding dimension")
    label = name or f"st:{root.resolve().name}@{_fingerprint(root, model)}"
    if dim is not None:
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= full:
            raise ModelLoadError(f"{label}: dim={dim!r} is not a Matryoshka dim this model supports "
                                 f"(1..{full}; use the sizes its model card lists)")
        model.truncate_dim = dim
        if dim != full:
            label += f":dim{dim}"
    model.eval()
    return SentenceTransformerEncoder(model, name=label, dim=dim or full, image_policy=policy)


__all__ = ["SentenceTransformerEncoder", "load_sentence_transformer", "query_prompt"]
