"""Yes/no reranking with a local multimodal LLM (LLaVA-NeXT first; Qwen2-VL / Idefics-style processors too).

The MM-Embed paper reranks the retriever's top candidates zero-shot with LLaVA-NeXT: it shows the model the
query and one candidate, asks whether they match, and takes the probability of the answer ``True``. Here:

* one prompt per (query, candidate): the task instruction, the query's parts and the candidate's parts in
  their own order (each image becomes the model's image placeholder *where it is*), then a yes/no question
  chosen by the kind of pair from :data:`QUESTIONS` -- the one table of prompt templates;
* the prompt is wrapped in the checkpoint's chat template (when it has one) with the generation prompt, so
  the next token is the answer;
* ``score = P(True) / (P(True) + P(False))`` from the next-token logits, i.e. ``sigmoid(l_True - l_False)``
  (log-sum-exp over the spellings of each word that are single tokens, e.g. ``True`` and ``▁True``);
* batches are padded on the tokenizer's side; the answer logit is read at each row's last real token (found
  from the attention mask, so left and right padding both work), and left-padded rows get position ids that
  start at 0 like an unpadded prompt.

Only the final hidden state of that one position goes through the output head, restricted to the answer
tokens: a 32k-vocabulary head over thousands of image tokens would otherwise dominate memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..encoders._torch import resolve_device, resolve_dtype
from ..encoders.base import image_policy_from_kwargs
from ..errors import InputError, ModelLoadError
from ..inputs import ImagePart, Interleaved, TextPart
from .base import Reranker

logger = logging.getLogger(__name__)

#: The yes/no question asked for each kind of pair, keyed by (query modality, candidate modality).
#: This is the one table of prompt templates; :data:`PROMPT` says where it goes.
QUESTIONS: dict[tuple[str, str], str] = {
    ("text", "text"): "Is the candidate text relevant to the query, for example does it answer it?",
    ("text", "image"): "Does the candidate image match the query text?",
    ("text", "image+text"): "Does the candidate, its image and its text, match the query text?",
    ("image", "text"): "Does the candidate text describe the query image?",
    ("image", "image"): "Does the candidate image show the same thing as the query image?",
    ("image", "image+text"): "Is the candidate, its image and its text, about the query image?",
    ("image+text", "text"): "Does the candidate text answer the query about the query image?",
    ("image+text", "image"): "Does the candidate image match the query image as changed or asked by the query text?",
    ("image+text", "image+text"): "Does the candidate, its image and its text, answer the query about the query image?",
}

#: The prompt body (before the chat template). ``{task}`` is ``"Task: <instruction>\n"`` or empty.
PROMPT = "{task}Query:\n{query}\nCandidate:\n{candidate}\n{question} Answer True or False."

#: Image placeholders for model families whose processor expects more than its bare image token.
IMAGE_PLACEHOLDERS: dict[str, str] = {
    "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>",
}

#: Families that compute their own (multimodal rotary) position ids from the attention mask.
_OWN_POSITIONS = {"qwen2_vl", "qwen2_5_vl", "qwen3_vl"}

#: config ``model_type`` values this backend is meant for (used by :func:`mmembed.load_reranker` detection).
MLLM_MODEL_TYPES = {"llava", "llava_next", "llava_onevision", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "idefics2",
                    "idefics3", "smolvlm", "paligemma", "gemma3", "mllama", "mistral3"}


def question_for(query: Interleaved, candidate: Interleaved) -> str:
    return QUESTIONS[(query.modality, candidate.modality)]


def answer_token_ids(tokenizer: Any, word: str) -> list[int]:
    """Ids of the single tokens that spell ``word`` at the start of an answer (with and without a leading
    space). Raises ModelLoadError when the tokenizer has none (the word would need several tokens)."""
    ids: list[int] = []
    for variant in (word, " " + word):
        toks = tokenizer.encode(variant, add_special_tokens=False)
        if len(toks) == 1 and toks[0] not in ids and toks[0] != tokenizer.unk_token_id:
            ids.append(int(toks[0]))
    if not ids:
        raise ModelLoadError(f"the tokenizer has no single token for the answer {word!r}; the yes/no reranker "
                             "needs one (pass true_word=/false_word= for another language or spelling)")
    return ids


class MLLMReranker(Reranker):
    """Score (query, candidate) pairs by asking a multimodal LLM "True or False?".

    Args:
        model: a transformers image-text-to-text model (e.g. ``LlavaNextForConditionalGeneration``).
        processor: its processor (tokenizer + image processor, optional chat template).
        padding_side: ``"left"`` or ``"right"``; ``None`` keeps the tokenizer's own setting.
        max_text_chars: each item's text is cut to this many characters (long passages would push the
            question out of the context; images are never cut).
        true_word, false_word: the answer words.
    """

    def __init__(self, model: Any, processor: Any, *, name: str = "mllm", padding_side: str | None = None,
                 max_text_chars: int = 4000, true_word: str = "True", false_word: str = "False",
                 image_policy: Any = None) -> None:
        self.model = model.eval()
        self.processor = processor
        self.name = name
        if image_policy is not None:
            self.image_policy = image_policy
        self.tokenizer = getattr(processor, "tokenizer", processor)
        if padding_side is not None:
            if padding_side not in ("left", "right"):
                raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
            self.tokenizer.padding_side = padding_side
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_text_chars = int(max_text_chars)
        self.true_ids = answer_token_ids(self.tokenizer, true_word)
        self.false_ids = answer_token_ids(self.tokenizer, false_word)
        if set(self.true_ids) & set(self.false_ids):
            raise ModelLoadError(f"answers {true_word!r} and {false_word!r} share a token")
        cfg = model.config
        self.model_type = getattr(cfg, "model_type", "")
        self.image_token = getattr(processor, "image_token", None) or "<image>"
        self.image_placeholder = IMAGE_PLACEHOLDERS.get(self.model_type, self.image_token)
        text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        self._softcap = getattr(text_cfg, "final_logit_softcapping", None)

    # ---- prompts ---------------------------------------------------------------------------------------
    def _render(self, item: Interleaved, images: list[Any]) -> str:
        """The item's parts in order: text (cut, image tokens defused) and one placeholder per image."""
        budget = self.max_text_chars
        lines: list[str] = []
        for part in item.parts:
            if isinstance(part, ImagePart):
                lines.append(self.image_placeholder)
                images.append(part.image)
            elif isinstance(part, TextPart):
                text = part.text[: max(budget, 0)]
                budget -= len(text)
                # a literal "<image>" in user text would be taken for an image slot
                lines.append(text.replace(self.image_token, self.image_token.replace("<", "< ")))
        return "\n".join(lines)

    def build_prompt(self, query: Interleaved, candidate: Interleaved, instruction: str | None = None
                     ) -> tuple[str, list[Any]]:
        """The full prompt text for one pair and its images in prompt order (query images first)."""
        images: list[Any] = []
        body = PROMPT.format(
            task=f"Task: {instruction}\n" if instruction else "",
            query=self._render(query, images),
            candidate=self._render(candidate, images),
            question=question_for(query, candidate),
        )
        return self._wrap(body), images

    def _wrap(self, body: str) -> str:
        template = getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        if not template:
            return f"USER: {body}\nASSISTANT:"
        messages = [{"role": "user", "content": [{"type": "text", "text": body}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    # ---- scoring ---------------------------------------------------------------------------------------
    def _inputs(self, prompts: list[str], images: list[Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"text": prompts, "return_tensors": "pt", "padding": True}
        if images:
            kwargs["images"] = images
        return dict(self.processor(**kwargs))

    @torch.inference_mode()
    def answer_logits(self, prompts: list[str], images: list[Any]) -> torch.Tensor:
        """``(n, 2)`` float32: log-sum-exp of the ``True`` and ``False`` logits at each prompt's next token."""
        p = next(self.model.parameters())
        batch = {k: (v.to(p.device) if hasattr(v, "to") else v) for k, v in self._inputs(prompts, images).items()}
        base = getattr(self.model, "model", None)
        head = self.model.get_output_embeddings()
        accepted = _forward_args(base if base is not None and head is not None else self.model)
        if accepted is not None:  # e.g. token_type_ids from a BERT-style tokenizer the model does not take
            batch = {k: v for k, v in batch.items() if k in accepted}
        if "pixel_values" in batch and batch["pixel_values"].is_floating_point():
            batch["pixel_values"] = batch["pixel_values"].to(p.dtype)
        mask = batch["attention_mask"]
        if self.tokenizer.padding_side == "left" and self.model_type not in _OWN_POSITIONS:
            batch["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        # last real token of each row, wherever the padding is
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (positions * mask.long()).argmax(dim=-1)
        rows = torch.arange(mask.shape[0], device=mask.device)
        ids = torch.tensor(self.true_ids + self.false_ids, device=p.device)
        if base is not None and head is not None:
            hidden = base(**batch).last_hidden_state[rows, last]
            logits = hidden.to(head.weight.dtype) @ head.weight[ids].T
            if getattr(head, "bias", None) is not None:
                logits = logits + head.bias[ids]
        else:  # a model without the usual base/head split: full logits
            logits = self.model(**batch).logits[rows, last][:, ids]
        logits = logits.float()
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        n_true = len(self.true_ids)
        return torch.stack([logits[:, :n_true].logsumexp(-1), logits[:, n_true:].logsumexp(-1)], dim=-1)

    def _score_batch(self, query: Interleaved, candidates: Sequence[Interleaved], *,
                     instruction: str | None) -> list[float]:
        prompts: list[str] = []
        images: list[Any] = []
        for cand in candidates:
            text, imgs = self.build_prompt(query, cand, instruction)
            prompts.append(text)
            images.extend(imgs)
        try:
            pair = self.answer_logits(prompts, images)
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"{self.name}: the model could not read this batch ({exc})") from exc
        return torch.sigmoid(pair[:, 0] - pair[:, 1]).tolist()


def _forward_args(module: Any) -> set[str] | None:
    """Names ``module.forward`` takes, or None when it takes arbitrary keywords."""
    import inspect

    params = inspect.signature(module.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        named = {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        return named | {"input_ids", "attention_mask", "pixel_values", "image_sizes", "image_grid_thw",
                        "pixel_attention_mask", "position_ids"}
    return set(params)


def load_mllm(path: str | os.PathLike[str], *, device: str | None = None, dtype: str | None = None,
              **kwargs: Any) -> MLLMReranker:
    """Load a local image-text-to-text checkpoint directory (config + weights + processor files)."""
    policy = image_policy_from_kwargs(kwargs)
    root = Path(path).expanduser()
    if not (root / "config.json").is_file():
        raise ModelLoadError(f"{root} has no config.json; give a local transformers checkpoint directory")
    try:
        from transformers import AutoModelForImageTextToText, AutoProcessor
    except ImportError as exc:  # pragma: no cover - transformers is a core dependency
        raise ModelLoadError("the MLLM reranker needs transformers >= 4.49") from exc
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    try:
        processor = AutoProcessor.from_pretrained(str(root), local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(str(root), dtype=torch_dtype, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot load {root} as an image-text-to-text model: {exc}") from exc
    return MLLMReranker(model.to(dev), processor, name=f"mllm:{root.name}", image_policy=policy, **kwargs)


__all__ = ["IMAGE_PLACEHOLDERS", "MLLMReranker", "MLLM_MODEL_TYPES", "PROMPT", "QUESTIONS", "answer_token_ids",
           "load_mllm", "question_for"]
