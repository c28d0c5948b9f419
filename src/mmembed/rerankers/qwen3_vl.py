"""Qwen3-VL-Reranker (2B / 8B, Apache-2.0) as an mmembed reranker.

As the model card and the Qwen team's reference reranker do it:

* **Prompt.** A fixed ``system`` turn (judge whether the Document meets the requirements of the Query and
  the Instruct; answer only "yes" or "no"), then one ``user`` turn: ``<Instruct>: {instruction}``,
  ``<Query>:`` followed by the query's parts, ``\\n<Document>:`` followed by the candidate's parts (images
  in place, in the items' own order; an empty item as ``NULL``), then the generation prompt, rendered with
  the checkpoint's chat template. Without a task/instruction the card's default instruction is used.
* **Score.** ``sigmoid(logit("yes") - logit("no"))`` of the next token after the prompt -- exactly the
  reference's linear head built from the two rows of the output embedding. Only those two rows are applied
  to the one hidden state per pair (never the full vocabulary over every position).
* **Batching.** Pairs are scored in batches with left padding (the reference scores one pair at a time; a
  test shows batched scores equal one-at-a-time scores).
* **Images.** Qwen's resize rule between ``min_pixels`` and ``max_pixels`` (card defaults), through the same
  torchvision-free processor as the embedding backend (:mod:`mmembed.encoders.qwen3_vl`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..encoders.base import image_policy_from_kwargs
from ..encoders.qwen3_vl import MAX_PIXELS, MIN_PIXELS, item_content, load_parts, load_weights
from ..errors import ModelLoadError
from ..inputs import Interleaved
from .mllm import MLLMReranker

SYSTEM = ('Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
          'Note that the answer can only be "yes" or "no".')
DEFAULT_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."
MAX_LENGTH = 10240


class Qwen3VLReranker(MLLMReranker):
    """Pointwise yes/no reranking with Qwen3-VL-Reranker (see the module docstring)."""

    def __init__(self, model: Any, processor: Any, *, name: str, default_instruction: str = DEFAULT_INSTRUCTION,
                 image_policy: Any = None) -> None:
        super().__init__(model, processor, name=name, padding_side="left", true_word="yes", false_word="no",
                         image_policy=image_policy)
        vocab = self.tokenizer.get_vocab()
        # exactly the "yes" and "no" tokens, as the reference head (not their space-prefixed spellings)
        self.true_ids, self.false_ids = [vocab["yes"]], [vocab["no"]]
        self.image_placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
        self.default_instruction = default_instruction

    def messages(self, query: Interleaved, candidate: Interleaved, instruction: str | None) -> list[dict[str, Any]]:
        content = [{"type": "text", "text": "<Instruct>: " + (instruction or self.default_instruction)},
                   {"type": "text", "text": "<Query>:"}, *item_content(query),
                   {"type": "text", "text": "\n<Document>:"}, *item_content(candidate)]
        return [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
                {"role": "user", "content": content}]

    def build_prompt(self, query: Interleaved, candidate: Interleaved, instruction: str | None = None
                     ) -> tuple[str, list[Any]]:
        images = [p.image for p in query.images] + [p.image for p in candidate.images]
        return self.processor.render(self.messages(query, candidate, instruction)), images


def load_qwen3_vl_reranker(path: str | os.PathLike[str], *, device: str | None = None, dtype: str | None = None,
                           instruction: str = DEFAULT_INSTRUCTION, min_pixels: int = MIN_PIXELS,
                           max_pixels: int = MAX_PIXELS, max_length: int = MAX_LENGTH, **kwargs: Any
                           ) -> Qwen3VLReranker:
    """Load a Qwen3-VL-Reranker directory (config.json + safetensors + tokenizer + chat template)."""
    policy = image_policy_from_kwargs(kwargs)
    if kwargs:
        raise TypeError(f"load_qwen3_vl_reranker() got unexpected options {sorted(kwargs)}")
    root = Path(path).expanduser()
    processor, _ = load_parts(root, padding_side="left", min_pixels=min_pixels, max_pixels=max_pixels,
                              max_length=max_length)
    vocab = processor.tokenizer.get_vocab()
    if "yes" not in vocab or "no" not in vocab:
        raise ModelLoadError(f"{root}: the tokenizer has no single 'yes'/'no' tokens; not a Qwen3-VL-Reranker")
    from transformers import AutoModelForImageTextToText

    model = load_weights(AutoModelForImageTextToText, root, device=device, dtype=dtype)
    return Qwen3VLReranker(model, processor, name=f"qwen3-vl-reranker:{root.resolve().name}",
                           default_instruction=instruction, image_policy=policy)


def load_from_hub(name: str, *, device: str | None = None, dtype: str | None = None, **kwargs: Any
                  ) -> Qwen3VLReranker:
    """Registry target for ``Qwen/Qwen3-VL-Reranker-*``: download (or find in the cache) and load with this
    backend, whether or not the repository ships a sentence-transformers CrossEncoder config."""
    from .. import hub
    from ..encoders.registry import HUB_OPTIONS

    opts = {k: kwargs.pop(k) for k in HUB_OPTIONS if k in kwargs}
    path, _ = hub.resolve(name, kind="reranker", detect=lambda _p: "qwen3-vl", **opts)
    return load_qwen3_vl_reranker(path, device=device, dtype=dtype, **kwargs)


__all__ = ["DEFAULT_INSTRUCTION", "SYSTEM", "Qwen3VLReranker", "load_from_hub", "load_qwen3_vl_reranker"]
