"""Build a tiny, randomly initialised MM-Embed checkpoint **in the published hub layout**, offline.

Nothing here imports mmembed: the file layout, config keys and tensor names are written out explicitly as
the hub checkpoint (``nvidia/MM-Embed``, saved by transformers 4.42 from the hub's ``NVMMEmbedModel``) has
them, so a loader that maps names wrongly fails the tests instead of agreeing with itself.

Layout written to ``path``:
  config.json                        LLaVA-NeXT config + MM-Embed's keys (retriever, add_eos_token, ...)
  model-0000k-of-00003.safetensors   vision tower / language model / projector + newline + pooling head
  model.safetensors.index.json       {"metadata": {"total_size": ...}, "weight_map": {...}}
  tokenizer.json, tokenizer_config.json, special_tokens_map.json   a small word-level tokenizer with the
                                     hub's special tokens (<unk>, <s>, </s>, then <image> and <pad> appended
                                     after the language model's vocabulary, as in the LLaVA tokenizer)
  preprocessor_config.json           LLaVA-NeXT image processor settings at the tiny image size
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

# ---- sizes ------------------------------------------------------------------------------------------
VISION = {"hidden": 32, "layers": 2, "heads": 2, "inter": 64, "image": 28, "patch": 7}
TEXT = {"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "inter": 128}
LATENT = {"latents": 16, "heads": 8, "head_dim": 8, "mult": 4}
PATCHES = (VISION["image"] // VISION["patch"]) ** 2  # 16 patch tokens per image
IMAGE_TOKENS = PATCHES + 1  # + the image-newline token

SPECIALS = ["<unk>", "<s>", "</s>"]
WORDS = (
    "a an the of in on with and or is are to for query instruct find retrieve image images photo caption "
    "cat dog red blue green car tree house river day night news fashion wikipedia passage question answer "
    "everyday matches given that what which who where when this these picture document text"
).split()
CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,:;!?'\"()[]{}-_/<>=+*&%$#@") + ["\n"]
VOCAB: list[str] = SPECIALS + WORDS + [c for c in CHARS if c not in WORDS]
LM_VOCAB = len(VOCAB)  # rows of the language model's embedding
IMAGE_TOKEN_ID = LM_VOCAB  # "<image>", outside the embedding, like 32000 in the hub tokenizer
PAD_TOKEN_ID = LM_VOCAB + 1  # "<pad>", like 32001


def published_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint, by its published name."""
    v, t, lat = VISION, TEXT, LATENT
    d, dv = t["hidden"], v["hidden"]
    shapes: dict[str, tuple[int, ...]] = {}
    pv = "vision_tower.vision_model."
    shapes[pv + "embeddings.class_embedding"] = (dv,)
    shapes[pv + "embeddings.patch_embedding.weight"] = (dv, 3, v["patch"], v["patch"])
    shapes[pv + "embeddings.position_embedding.weight"] = (PATCHES + 1, dv)
    for n in ("pre_layrnorm", "post_layernorm"):
        shapes[f"{pv}{n}.weight"] = shapes[f"{pv}{n}.bias"] = (dv,)
    for i in range(v["layers"]):
        pl = f"{pv}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[f"{pl}self_attn.{proj}.weight"] = (dv, dv)
            shapes[f"{pl}self_attn.{proj}.bias"] = (dv,)
        for n in ("layer_norm1", "layer_norm2"):
            shapes[f"{pl}{n}.weight"] = shapes[f"{pl}{n}.bias"] = (dv,)
        shapes[f"{pl}mlp.fc1.weight"], shapes[f"{pl}mlp.fc1.bias"] = (v["inter"], dv), (v["inter"],)
        shapes[f"{pl}mlp.fc2.weight"], shapes[f"{pl}mlp.fc2.bias"] = (dv, v["inter"]), (dv,)
    pt = "language_model."
    head = d // t["heads"]
    shapes[pt + "embed_tokens.weight"] = (LM_VOCAB, d)
    shapes[pt + "norm.weight"] = (d,)
    for i in range(t["layers"]):
        pl = f"{pt}layers.{i}."
        shapes[pl + "self_attn.q_proj.weight"] = (d, d)
        shapes[pl + "self_attn.k_proj.weight"] = (t["kv_heads"] * head, d)
        shapes[pl + "self_attn.v_proj.weight"] = (t["kv_heads"] * head, d)
        shapes[pl + "self_attn.o_proj.weight"] = (d, d)
        shapes[pl + "mlp.gate_proj.weight"] = (t["inter"], d)
        shapes[pl + "mlp.up_proj.weight"] = (t["inter"], d)
        shapes[pl + "mlp.down_proj.weight"] = (d, t["inter"])
        shapes[pl + "input_layernorm.weight"] = (d,)
        shapes[pl + "post_attention_layernorm.weight"] = (d,)
    shapes["multi_modal_projector.linear_1.weight"] = (d, dv)
    shapes["multi_modal_projector.linear_1.bias"] = (d,)
    shapes["multi_modal_projector.linear_2.weight"] = (d, d)
    shapes["multi_modal_projector.linear_2.bias"] = (d,)
    shapes["image_newline"] = (d,)
    pa = "latent_attention_model."
    inner = lat["heads"] * lat["head_dim"]
    shapes[pa + "latents"] = (lat["latents"], d)
    for n in ("cross_attend_blocks.0.norm", "cross_attend_blocks.0.norm_context", "cross_attend_blocks.1.norm"):
        shapes[f"{pa}{n}.weight"] = shapes[f"{pa}{n}.bias"] = (d,)
    shapes[pa + "cross_attend_blocks.0.fn.to_q.weight"] = (inner, d)
    shapes[pa + "cross_attend_blocks.0.fn.to_kv.weight"] = (2 * inner, d)
    shapes[pa + "cross_attend_blocks.0.fn.to_out.weight"] = (d, inner)
    shapes[pa + "cross_attend_blocks.1.fn.net.0.weight"] = (2 * lat["mult"] * d, d)
    shapes[pa + "cross_attend_blocks.1.fn.net.0.bias"] = (2 * lat["mult"] * d,)
    shapes[pa + "cross_attend_blocks.1.fn.net.2.weight"] = (d, lat["mult"] * d)
    shapes[pa + "cross_attend_blocks.1.fn.net.2.bias"] = (d,)
    return shapes


def random_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with scales that keep signals alive through the tiny network."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, shape in published_shapes().items():
        noise = torch.randn(shape, generator=g)
        if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "layrnorm.weight", "layernorm.weight",
                          "norm_context.weight")):
            t = 1.0 + 0.1 * noise
        elif name.endswith(".bias"):
            t = 0.05 * noise
        elif len(shape) == 1 or name.endswith(("embed_tokens.weight", "position_embedding.weight", "latents")):
            t = noise  # embeddings, class embedding, image newline, latents
        else:
            fan_in = math.prod(shape[1:])
            t = noise / math.sqrt(fan_in)
        out[name] = t.contiguous()
    return out


def config_json() -> dict[str, Any]:
    v, t = VISION, TEXT
    return {
        "_name_or_path": "tiny-mm-embed",
        "add_eos_token": True,
        "architectures": ["NVMMEmbedModel"],
        "auto_map": {"AutoModel": "modeling_nvmmembed.NVMMEmbedModel"},
        "global_image_patch_only": True,
        "ignore_index": -100,
        "image_grid_pinpoints": [[28, 56], [56, 28], [56, 56]],
        "image_token_index": IMAGE_TOKEN_ID,
        "model_type": "llava_next",
        "padding_side": "right",
        "projector_hidden_act": "gelu",
        "retriever": "nvidia/NV-Embed-v1",
        "text_config": {
            "architectures": ["MistralForCausalLM"],
            "hidden_size": t["hidden"],
            "intermediate_size": t["inter"],
            "max_position_embeddings": 4096,
            "model_type": "mistral",
            "num_attention_heads": t["heads"],
            "num_hidden_layers": t["layers"],
            "num_key_value_heads": t["kv_heads"],
            "rms_norm_eps": 1e-05,
            "rope_theta": 1000000.0,
            "sliding_window": None,
            "vocab_size": LM_VOCAB + 2,
        },
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.42.4",
        "use_image_newline_parameter": True,
        "vision_config": {
            "hidden_size": v["hidden"],
            "image_size": v["image"],
            "intermediate_size": v["inter"],
            "model_type": "clip_vision_model",
            "num_attention_heads": v["heads"],
            "num_hidden_layers": v["layers"],
            "patch_size": v["patch"],
            "projection_dim": 16,
            "vocab_size": 32000,
        },
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "vocab_size": LM_VOCAB + 2,
    }


def preprocessor_json() -> dict[str, Any]:
    s = VISION["image"]
    return {
        "crop_size": {"height": s, "width": s},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_pad": True,
        "do_rescale": True,
        "do_resize": True,
        "image_grid_pinpoints": [[28, 56], [56, 28], [56, 56]],
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "LlavaNextImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "processor_class": "LlavaNextProcessor",
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": s},
    }


def write_tokenizer(path: Path) -> None:
    from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[ \t]+"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"\w+|\n|[^\w\s]"), behavior="isolated"),
    ])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tok.add_special_tokens([AddedToken("<image>", special=True, normalized=False),
                            AddedToken("<pad>", special=True, normalized=False)])
    assert tok.token_to_id("<image>") == IMAGE_TOKEN_ID and tok.token_to_id("<pad>") == PAD_TOKEN_ID
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "padding_side": "left",
        "model_max_length": 4096,
        "tokenizer_class": "LlamaTokenizer",
        "processor_class": "LlavaNextProcessor",
    }, indent=2))
    special = {k: {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
               for k, c in (("bos_token", "<s>"), ("eos_token", "</s>"), ("pad_token", "<pad>"), ("unk_token", "<unk>"))}
    (path / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


def _shard_of(name: str) -> int:
    if name.startswith("vision_tower."):
        return 1
    if name.startswith("language_model."):
        return 2
    return 3


def write_weights(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    shards: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        shards.setdefault(_shard_of(name), {})[name] = t
    weight_map = {}
    for k, shard in sorted(shards.items()):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, fname))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )


def build_tiny_mmembed(path: str | Path, *, seed: int = 0, config: dict[str, Any] | None = None,
                       tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a complete tiny checkpoint to ``path``; ``config``/``tensors`` replace the defaults."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config if config is not None else config_json(), indent=2))
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor_json(), indent=2))
    write_tokenizer(out)
    write_weights(out, tensors if tensors is not None else random_weights(seed))
    return out
