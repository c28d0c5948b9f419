"""Build tiny, randomly initialised Qwen3-VL-Embedding / Qwen3-VL-Reranker checkpoints **in the hub layout**.

Nothing here imports mmembed. The network is transformers' own ``Qwen3VLForConditionalGeneration`` at tiny
sizes (same config keys as the published 2B checkpoints, tied embeddings like them) saved with
``save_pretrained``; the tokenizer is a small BPE with Qwen's special tokens and single tokens for ``yes`` /
``no``; the image processor config, the chat template and the sentence-transformers files
(``modules.json``, ``config_sentence_transformers.json``, ``sentence_bert_config.json``, ``1_Pooling``) are
written as those repositories ship them, so both the native backend and sentence-transformers load the same
directory.

Layout written to ``path``:
  config.json, generation_config.json, model.safetensors   (transformers' save_pretrained)
  tokenizer.json, tokenizer_config.json, chat_template.jinja
  preprocessor_config.json, video_preprocessor_config.json
  modules.json, config_sentence_transformers.json, sentence_bert_config.json, 1_Pooling/config.json (embedding)
  modules.json, config_sentence_transformers.json, sentence_bert_config.json, 1_LogitScore/config.json (reranker)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>", "<unk>"]
CHARS = [chr(c) for c in range(32, 127)] + ["\n", "\t"]
MERGES = [("y", "e"), ("ye", "s"), ("n", "o")]  # "yes" and "no" are single tokens, as in Qwen's vocabulary
VOCAB: list[str] = SPECIALS + CHARS + ["ye", "yes", "no"]
IDS = {t: i for i, t in enumerate(VOCAB)}

PATCH, MERGE, TEMPORAL = 16, 2, 2
MIN_PIXELS = 4 * 32 * 32  # the model card's limits are 4..1800 tokens of 32x32 pixels; tiny: 4..16
MAX_PIXELS = 16 * 32 * 32

#: Qwen3-VL's chat layout: <|im_start|>role\ncontent<|im_end|>\n, images as vision_start/image_pad/vision_end.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' or 'image' in item -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'video' or 'video' in item -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def config(*, seed_hidden: int = 128) -> dict[str, Any]:
    """The tiny network's config, in the published checkpoints' keys."""
    return {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "model_type": "qwen3_vl",
        "image_token_id": IDS["<|image_pad|>"],
        "video_token_id": IDS["<|video_pad|>"],
        "vision_start_token_id": IDS["<|vision_start|>"],
        "vision_end_token_id": IDS["<|vision_end|>"],
        "tie_word_embeddings": True,
        "text_config": {
            "model_type": "qwen3_vl_text", "vocab_size": len(VOCAB), "hidden_size": seed_hidden,
            "intermediate_size": 2 * seed_hidden, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 32, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_interleaved": True,
                                "mrope_section": [4, 6, 6]},
            "tie_word_embeddings": True, "bos_token_id": IDS["<|endoftext|>"], "eos_token_id": IDS["<|im_end|>"],
            "pad_token_id": IDS["<|endoftext|>"],
        },
        "vision_config": {
            "model_type": "qwen3_vl", "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
            "in_channels": 3, "patch_size": PATCH, "spatial_merge_size": MERGE, "temporal_patch_size": TEMPORAL,
            "out_hidden_size": seed_hidden, "num_position_embeddings": 64, "deepstack_visual_indexes": [0],
        },
    }


def write_tokenizer(path: Path) -> None:
    from tokenizers import AddedToken, Regex, Tokenizer, pre_tokenizers
    from tokenizers.models import BPE

    tok = Tokenizer(BPE(vocab=IDS, merges=MERGES, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\w+|\s+|[^\w\s]+"), behavior="isolated")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": "<unk>", "model_max_length": 4096, "padding_side": "right", "errors": "replace",
        "extra_special_tokens": {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                 "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"},
    }, indent=2))
    (path / "chat_template.jinja").write_text(CHAT_TEMPLATE)


def write_processor_configs(path: Path) -> None:
    common = {"patch_size": PATCH, "merge_size": MERGE, "temporal_patch_size": TEMPORAL,
              "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_rescale": True,
              "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True, "resample": 3}
    (path / "preprocessor_config.json").write_text(json.dumps({
        **common, "image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor",
        "do_resize": True, "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
    }, indent=2))
    (path / "video_preprocessor_config.json").write_text(json.dumps({
        **common, "video_processor_type": "Qwen3VLVideoProcessor", "processor_class": "Qwen3VLProcessor",
        "do_resize": True, "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}, "fps": 2,
        "do_sample_frames": True, "min_frames": 4, "max_frames": 16,
    }, indent=2))


def _transformer_module_config(task: str) -> dict[str, Any]:
    out = "last_hidden_state" if task == "feature-extraction" else "logits"
    method = "forward"
    return {
        "transformer_task": task,
        "modality_config": {
            "text": {"method": method, "method_output_name": out},
            "image": {"method": method, "method_output_name": out},
            "message": {"method": method, "method_output_name": out, "format": "structured"},
        },
        "module_output_name": "token_embeddings" if task == "feature-extraction" else "causal_logits",
        "processing_kwargs": {"chat_template": {"add_generation_prompt": True}},
        "unpad_inputs": False,
    }


def write_st_embedding(path: Path, dim: int) -> None:
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.base.modules.normalize.Normalize"},
    ], indent=2))
    (path / "sentence_bert_config.json").write_text(json.dumps(_transformer_module_config("feature-extraction"),
                                                               indent=2))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"embedding_dimension": dim, "pooling_mode": "lasttoken", "include_prompt": True}, indent=2))
    (path / "2_Normalize").mkdir(exist_ok=True)
    (path / "config_sentence_transformers.json").write_text(json.dumps({
        "model_type": "SentenceTransformer",
        "prompts": {"query": "Retrieve images or text relevant to the user's query.",
                    "document": "Represent the user's input."},
        "default_prompt_name": None, "similarity_fn_name": "cosine",
    }, indent=2))


def write_st_reranker(path: Path) -> None:
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_LogitScore", "type": "sentence_transformers.cross_encoder.modules.logit_score.LogitScore"},
    ], indent=2))
    (path / "sentence_bert_config.json").write_text(json.dumps(_transformer_module_config("text-generation"),
                                                               indent=2))
    (path / "1_LogitScore").mkdir(exist_ok=True)
    (path / "1_LogitScore" / "config.json").write_text(json.dumps(
        {"true_token_id": IDS["yes"], "false_token_id": IDS["no"], "module_input_name": "causal_logits"}))
    (path / "config_sentence_transformers.json").write_text(json.dumps({
        "model_type": "CrossEncoder", "activation_fn": "torch.nn.modules.activation.Sigmoid",
        "default_prompt_name": None, "prompts": {},
    }, indent=2))


def build(path: str | Path, *, kind: str = "embedding", seed: int = 0) -> Path:
    """Write a tiny ``kind`` ("embedding" or "reranker") checkpoint to ``path``."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config()
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(**cfg)).eval()
    with torch.no_grad():  # random init is tiny (std 0.02); widen it so vectors and scores spread
        for name, p in model.named_parameters():
            if p.dim() > 1 and "embed" not in name:
                p.normal_(0.0, 1.0 / p.shape[-1] ** 0.5)
            elif "embed_tokens" in name:  # tied with the output head: keeps yes/no logits in sigmoid's range
                p.normal_(0.0, 0.05)
    model.save_pretrained(out)
    write_tokenizer(out)
    write_processor_configs(out)
    if kind == "embedding":
        write_st_embedding(out, cfg["text_config"]["hidden_size"])
    elif kind == "reranker":
        write_st_reranker(out)
    else:
        raise ValueError(kind)
    return out
