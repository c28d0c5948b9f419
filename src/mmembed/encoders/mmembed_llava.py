"""MM-Embed (``nvidia/MM-Embed``) on current transformers, without ``trust_remote_code``.

The hub ships MM-Embed as remote code pinned to transformers 4.42-4.43 (it breaks on current releases and
pulls NV-Embed-v1's remote code at start). This backend rebuilds the same network from transformers' own
modules and reads the published safetensors shards with their published key names:

* vision: ``CLIPVisionModel`` (ViT-L/14 at 336 px), features of layer ``vision_feature_layer`` (-2) without
  the CLS token, the LLaVA-NeXT projector, and the learnt ``image_newline`` vector. Only the **global**
  patch is used (MM-Embed's ``global_image_patch_only``): the whole image resized to 336x336, giving
  576 patch tokens + 1 newline token per image, no any-res tiles;
* language model: ``MistralModel`` run with **bidirectional** attention (NV-Embed's non-causal Mistral):
  every layer gets an explicit non-causal padding mask through SDPA;
* pooling: NV-Embed latent attention + masked mean over the tokens after the instruction
  (:mod:`.nvembed_pooling`), then L2 normalisation.

Prompts are built exactly as the hub code builds them (``Instruct: {instruction}\\nQuery: <image>\\n{text}``,
``Query: ...`` without instruction, documents ``<image>\\n{text}``, BOS first, EOS appended, right padding).
Extension beyond the hub: several images per item, each expanded where it occurs in the interleaved input.
``docs/mm-embed.md`` describes the differences from the hub code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import InputError, ModelLoadError
from ..inputs import Interleaved, TextPart
from ._torch import resolve_device, resolve_dtype
from .base import Encoder, image_policy_from_kwargs
from .nvembed_pooling import PUBLISHED_KEYS as _POOLING_KEYS
from .nvembed_pooling import LatentAttentionPooling

HUB_NAME = "nvidia/MM-Embed"
ARCHITECTURE = "NVMMEmbedModel"
IMAGE_MARKER = "<image>"
QUERY_PREFIX = "Query: "
INSTRUCTION_TEMPLATE = "Instruct: {instruction}\n"
#: The hub code's default is 512 and the model card's example uses 4096; we keep the longer one so long
#: documents are not cut (batches are length-sorted, so short inputs do not pay for it).
DEFAULT_MAX_LENGTH = 4096

CONFIG_FILE = "config.json"
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
PREPROCESSOR_FILE = "preprocessor_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "added_tokens.json", "processor_config.json", "chat_template.json")

#: What the hub code takes from the retriever it names in ``config.json`` (``retriever``) instead of from
#: MM-Embed's own config: it builds its language model and pooling head from NV-Embed-v1's config, whose
#: Mistral is Mistral-7B-v0.1 (RoPE base 10000, RMSNorm eps 1e-5) and whose latent attention has 8 heads.
#: Layer sizes are checked against the tensors; these two settings cannot be read off the weights.
_RETRIEVER_RUNTIME: dict[str, dict[str, Any]] = {
    "nvidia/NV-Embed-v1": {"rope_theta": 10000.0, "rms_norm_eps": 1e-5, "num_cross_heads": 8},
}
DEFAULT_CROSS_HEADS = 8

#: Checkpoint entries that are derived buffers in some transformers versions; ignored when present.
_IGNORABLE_SUFFIXES = (".position_ids", ".rotary_emb.inv_freq")

_DOWNLOAD_STEPS = (
    "Where the hub is reachable, mmembed.load_encoder('nvidia/MM-Embed') downloads the checkpoint into the "
    "Hugging Face cache (about 16.4 GB, license CC-BY-NC-4.0); or download it once:\n"
    "    hf download nvidia/MM-Embed --local-dir MM-Embed      (or: huggingface-cli download ...)\n"
    "then copy the folder to this machine and load it with mmembed.load_encoder('path/to/MM-Embed'); "
    "or download into the Hugging Face cache (omit --local-dir) and use load_encoder('nvidia/MM-Embed'). "
    "See docs/mm-embed.md."
)


# ================================================================================================
# Checkpoint files: config, index, shard headers
# ================================================================================================
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path.parent}: {path.name} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data


@dataclass
class CheckpointFiles:
    """Where each published tensor lives and its shape (read from the safetensors headers only)."""

    root: Path
    weight_map: dict[str, str]
    shapes: dict[str, tuple[int, ...]]

    @classmethod
    def read(cls, root: Path) -> "CheckpointFiles":
        from safetensors import safe_open

        index = root / INDEX_FILE
        if index.is_file():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ModelLoadError(f"{index} has no 'weight_map'")
        elif (root / SINGLE_FILE).is_file():
            weight_map = None
        else:
            hint = " (PyTorch .bin checkpoints are not read: use the safetensors files)" if any(
                root.glob("*.bin")) else ""
            raise ModelLoadError(f"{root} has neither {INDEX_FILE} nor {SINGLE_FILE}{hint}. {_DOWNLOAD_STEPS}")
        shards = sorted(set(weight_map.values())) if weight_map else [SINGLE_FILE]
        shapes: dict[str, tuple[int, ...]] = {}
        found: dict[str, str] = {}
        for shard in shards:
            path = root / shard
            if not path.is_file():
                raise ModelLoadError(f"{root}: shard {shard} named in {INDEX_FILE} is missing (incomplete download?)")
            try:
                with safe_open(str(path), framework="pt") as f:
                    for key in f.keys():
                        shapes[key] = tuple(f.get_slice(key).get_shape())
                        found[key] = shard
            except Exception as exc:  # noqa: BLE001 - safetensors raises several types
                raise ModelLoadError(f"{path} is not a readable safetensors file: {exc}") from exc
        if weight_map is not None:
            absent = sorted(k for k, s in weight_map.items() if found.get(k) != s)
            if absent:
                raise ModelLoadError(
                    f"{root}: {len(absent)} tensors listed in {INDEX_FILE} are not in their shard, e.g. "
                    f"{absent[:5]} (incomplete or mixed download?)"
                )
        return cls(root=root, weight_map=found, shapes=shapes)

    def tensors(self, names: Sequence[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield ``(published_name, tensor)`` shard by shard (one shard open at a time)."""
        from safetensors import safe_open

        by_shard: dict[str, list[str]] = {}
        for name in names:
            by_shard.setdefault(self.weight_map[name], []).append(name)
        for shard, keys in sorted(by_shard.items()):
            with safe_open(str(self.root / shard), framework="pt") as f:
                for key in keys:
                    yield key, f.get_tensor(key)


# ================================================================================================
# Configuration
# ================================================================================================
@dataclass
class MMEmbedSpec:
    """Everything needed to build the network, parsed and checked from ``config.json`` + tensor shapes."""

    raw: dict[str, Any]
    llava: Any  # transformers.LlavaNextConfig (holds the projector settings)
    text: Any  # transformers.MistralConfig actually used (runtime fields from the retriever applied)
    vision: Any  # transformers.CLIPVisionConfig
    image_token_id: int
    feature_layer: int
    select_strategy: str
    add_eos_token: bool
    num_latents: int
    cross_heads: int
    cross_head_dim: int
    mlp_mult: int

    @property
    def hidden_size(self) -> int:
        return int(self.text.hidden_size)

    @property
    def patch_tokens(self) -> int:
        """Vision tokens per image before the newline token (576 for MM-Embed)."""
        side = self.vision.image_size // self.vision.patch_size
        return side * side + (1 if self.select_strategy == "full" else 0)

    @property
    def image_tokens(self) -> int:
        """Sequence positions one image occupies: patch tokens + the image-newline token (577)."""
        return self.patch_tokens + 1


def _shape(files: CheckpointFiles, key: str, root: Path) -> tuple[int, ...]:
    if key not in files.shapes:
        raise ModelLoadError(f"{root}: the checkpoint has no tensor {key!r}; is this an MM-Embed checkpoint?")
    return files.shapes[key]


def parse_spec(raw: dict[str, Any], files: CheckpointFiles, root: Path) -> MMEmbedSpec:
    """Check ``config.json`` (published keys) against the checkpoint and build the transformers configs."""
    from transformers import LlavaNextConfig

    where = root / CONFIG_FILE
    archs = raw.get("architectures") or []
    if ARCHITECTURE not in archs:
        raise ModelLoadError(f"{where}: architectures {archs} does not contain {ARCHITECTURE!r}; not an MM-Embed checkpoint")
    for key in ("text_config", "vision_config"):
        if not isinstance(raw.get(key), dict):
            raise ModelLoadError(f"{where}: '{key}' is missing or not an object (an MM-Embed config has one)")
    text_type = raw["text_config"].get("model_type", "mistral")
    if text_type not in ("mistral", "bidir_mistral"):
        raise ModelLoadError(f"{where}: text_config.model_type is {text_type!r}; MM-Embed's language model is Mistral")
    vision_type = raw["vision_config"].get("model_type", "clip_vision_model")
    if vision_type != "clip_vision_model":
        raise ModelLoadError(f"{where}: vision_config.model_type is {vision_type!r}; expected 'clip_vision_model'")
    strategy = raw.get("vision_feature_select_strategy", "default")
    if strategy not in ("default", "full"):
        raise ModelLoadError(f"{where}: vision_feature_select_strategy {strategy!r} is not 'default' or 'full'")
    layer = raw.get("vision_feature_layer", -2)
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise ModelLoadError(f"{where}: vision_feature_layer must be one integer, got {layer!r}")
    if raw.get("global_image_patch_only", True) is not True:
        raise ModelLoadError(
            f"{where}: global_image_patch_only is {raw.get('global_image_patch_only')!r}; this backend implements "
            "MM-Embed's global-patch image encoding only"
        )
    image_token = raw.get("image_token_index", raw.get("image_token_id"))
    if not isinstance(image_token, int):
        raise ModelLoadError(f"{where}: 'image_token_index' is missing")

    text_cfg = dict(raw["text_config"], model_type="mistral")
    runtime = _RETRIEVER_RUNTIME.get(str(raw.get("retriever", "")), {})
    vocab, hidden = _shape(files, "language_model.embed_tokens.weight", root)
    # The language model's real vocabulary is the embedding matrix's (the LLaVA tokenizer's extra tokens,
    # <image> and <pad>, never reach it); the hub code likewise builds it from the retriever's config.
    text_cfg["vocab_size"] = vocab
    if "rope_theta" in runtime:
        text_cfg.pop("rope_parameters", None)
        text_cfg.pop("rope_scaling", None)
        text_cfg["rope_theta"] = runtime["rope_theta"]
    if "rms_norm_eps" in runtime:
        text_cfg["rms_norm_eps"] = runtime["rms_norm_eps"]
    text_cfg["sliding_window"] = None  # bidirectional attention sees the whole sequence (as NV-Embed does)
    llava_kwargs = {k: v for k, v in raw.items() if k not in ("text_config", "vision_config")}
    try:
        llava = LlavaNextConfig(text_config=text_cfg, vision_config=dict(raw["vision_config"]), **llava_kwargs)
    except Exception as exc:  # noqa: BLE001 - transformers validates configs with several error types
        raise ModelLoadError(f"{where}: transformers rejects this LLaVA-NeXT config: {exc}") from exc
    text, vision = llava.text_config, llava.vision_config
    text._attn_implementation = "sdpa"
    vision._attn_implementation = "sdpa"
    if hidden != text.hidden_size:
        raise ModelLoadError(
            f"{where}: text_config.hidden_size is {text.hidden_size} but language_model.embed_tokens.weight "
            f"has shape {[vocab, hidden]}; config.json does not describe these weights"
        )
    if vision.image_size % vision.patch_size:
        raise ModelLoadError(f"{where}: vision image_size {vision.image_size} is not a multiple of patch_size {vision.patch_size}")
    if not -vision.num_hidden_layers - 1 <= layer <= vision.num_hidden_layers:
        raise ModelLoadError(f"{where}: vision_feature_layer {layer} is out of range for {vision.num_hidden_layers} layers")

    latents = _shape(files, "latent_attention_model.latents", root)
    to_q = _shape(files, "latent_attention_model.cross_attend_blocks.0.fn.to_q.weight", root)
    ff_in = _shape(files, "latent_attention_model.cross_attend_blocks.1.fn.net.0.weight", root)
    extra = raw.get("latent_attention_config") if isinstance(raw.get("latent_attention_config"), dict) else {}
    heads = int(extra.get("num_cross_heads", runtime.get("num_cross_heads", DEFAULT_CROSS_HEADS)))
    if len(latents) != 2 or latents[1] != hidden:
        raise ModelLoadError(f"{root}: latent_attention_model.latents has shape {list(latents)}, expected [n, {hidden}]")
    if to_q[0] % heads:
        raise ModelLoadError(f"{root}: latent attention width {to_q[0]} is not divisible by {heads} heads")
    if ff_in[0] % (2 * hidden):
        raise ModelLoadError(f"{root}: latent attention feed-forward shape {list(ff_in)} is not [2*k*{hidden}, {hidden}]")
    return MMEmbedSpec(
        raw=raw,
        llava=llava,
        text=text,
        vision=vision,
        image_token_id=int(image_token),
        feature_layer=layer,
        select_strategy=strategy,
        add_eos_token=bool(raw.get("add_eos_token", True)),
        num_latents=int(latents[0]),
        cross_heads=heads,
        cross_head_dim=to_q[0] // heads,
        mlp_mult=ff_in[0] // (2 * hidden),
    )


# ================================================================================================
# The network
# ================================================================================================
@dataclass
class PreparedBatch:
    """Model inputs for one batch, after prompt building, tokenisation, image expansion and padding.

    ``input_ids`` holds the tokenizer's ids; the ``image_tokens`` positions of each image hold the image token
    id and are flagged in ``image_mask``. ``pool_mask`` is ``attention_mask`` without the instruction prefix.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pool_mask: torch.Tensor
    image_mask: torch.Tensor
    pixel_values: torch.Tensor | None
    instruction_lengths: list[int]
    lengths: list[int]

    def to(self, device: torch.device) -> "PreparedBatch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return PreparedBatch(
            move(self.input_ids), move(self.attention_mask), move(self.pool_mask), move(self.image_mask),
            move(self.pixel_values), self.instruction_lengths, self.lengths,
        )


class MMEmbedModel(nn.Module):
    """CLIP vision tower + LLaVA-NeXT projector + bidirectional Mistral + latent-attention pooling.

    Submodule names follow the published checkpoint (``vision_tower``, ``multi_modal_projector``,
    ``image_newline``, ``language_model``); the pooling head is ``pooler`` (published:
    ``latent_attention_model``). :func:`published_to_internal` spells out the mapping.
    """

    def __init__(self, spec: MMEmbedSpec, *, pad_token_id: int, pad_embedding_id: int) -> None:
        super().__init__()
        from transformers import CLIPVisionModel, MistralModel
        from transformers.models.llava_next.modeling_llava_next import LlavaNextMultiModalProjector

        self.spec = spec
        self.pad_token_id = pad_token_id
        self.pad_embedding_id = pad_embedding_id
        self.vision_tower = CLIPVisionModel(spec.vision)
        self.multi_modal_projector = LlavaNextMultiModalProjector(spec.llava)
        self.image_newline = nn.Parameter(torch.empty(spec.hidden_size))
        self.language_model = MistralModel(spec.text)
        for layer in self.language_model.layers:
            layer.self_attn.is_causal = False  # NV-Embed's Mistral attends both ways
        self.pooler = LatentAttentionPooling(
            spec.hidden_size,
            num_latents=spec.num_latents,
            num_heads=spec.cross_heads,
            head_dim=spec.cross_head_dim,
            mlp_mult=spec.mlp_mult,
        )

    # ---- pieces, public so tests and tools can inspect them -------------------------------------------
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(n_images, 3, H, W)`` -> ``(n_images, image_tokens, hidden)``: projected patches + newline."""
        out = self.vision_tower(pixel_values, output_hidden_states=True)
        feats = out.hidden_states[self.spec.feature_layer]
        if self.spec.select_strategy == "default":
            feats = feats[:, 1:]  # drop CLS
        feats = self.multi_modal_projector(feats)
        newline = self.image_newline.to(feats.dtype).expand(feats.shape[0], 1, -1)
        return torch.cat([feats, newline], dim=1)

    def input_embeddings(self, batch: PreparedBatch) -> torch.Tensor:
        """Token embeddings with every image's features written over its placeholder positions."""
        ids = batch.input_ids.clone()
        ids[batch.image_mask] = 0  # placeholders are overwritten below (the hub embeds id 0 there)
        # padding (and a pad token inside the text, as the hub does) is embedded like EOS
        ids[(ids == self.pad_token_id) | ~batch.attention_mask] = self.pad_embedding_id
        vocab = self.language_model.get_input_embeddings().num_embeddings
        if bool((ids >= vocab).any()):
            bad = sorted(set(ids[ids >= vocab].tolist()))
            raise InputError(f"token ids {bad[:5]} are special tokens the language model has no embedding for")
        embeds = self.language_model.get_input_embeddings()(ids)
        if batch.pixel_values is not None:
            feats = self.image_features(batch.pixel_values.to(embeds.dtype))
            expected = int(batch.image_mask.sum())
            if feats.shape[0] * feats.shape[1] != expected:
                raise RuntimeError(f"{feats.shape[0]} images give {feats.shape[0] * feats.shape[1]} tokens for {expected} slots")
            embeds = embeds.masked_scatter(batch.image_mask.unsqueeze(-1), feats.to(embeds.dtype).reshape(-1))
        return embeds

    def hidden_states(self, batch: PreparedBatch) -> torch.Tensor:
        """Last-layer token states ``(batch, seq, hidden)`` of the bidirectional language model."""
        embeds = self.input_embeddings(batch)
        mask = batch.attention_mask
        seq = mask.shape[1]
        # Non-causal padding mask for SDPA: query i may attend key j iff j is a real token.
        mask4d = mask[:, None, None, :].expand(mask.shape[0], 1, seq, seq)
        positions = torch.arange(seq, device=embeds.device).unsqueeze(0).expand(mask.shape[0], -1)
        out = self.language_model(inputs_embeds=embeds, attention_mask=mask4d, position_ids=positions, use_cache=False)
        return out.last_hidden_state

    def forward(self, batch: PreparedBatch) -> torch.Tensor:
        """Pooled (not yet normalised) embeddings ``(batch, hidden)`` in float32."""
        return self.pooler(self.hidden_states(batch), batch.pool_mask)


def _vision_nested(model: MMEmbedModel) -> bool:
    """transformers < 5 wraps CLIP's vision layers in ``.vision_model``; 5.x does not."""
    return hasattr(model.vision_tower, "vision_model")


def published_to_internal(name: str, *, vision_nested: bool) -> str | None:
    """The parameter of :class:`MMEmbedModel` a published checkpoint key loads into (None: not ours)."""
    if name.startswith("latent_attention_model."):
        ours = _POOLING_KEYS.get(name[len("latent_attention_model."):])
        return None if ours is None else "pooler." + ours
    if name == "image_newline" or name.startswith(("language_model.", "multi_modal_projector.")):
        return name
    if name.startswith("vision_tower.vision_model."):
        rest = name[len("vision_tower.vision_model."):]
        return "vision_tower." + ("vision_model." if vision_nested else "") + rest
    return None


def internal_to_published(name: str, *, vision_nested: bool) -> str:
    """Inverse of :func:`published_to_internal` (used when saving in the hub layout)."""
    if name.startswith("pooler."):
        inverse = {v: k for k, v in _POOLING_KEYS.items()}
        return "latent_attention_model." + inverse[name[len("pooler."):]]
    if name.startswith("vision_tower."):
        rest = name[len("vision_tower."):]
        if vision_nested:
            rest = rest[len("vision_model."):]
        return "vision_tower.vision_model." + rest
    return name


def _expected_keys(model: MMEmbedModel) -> dict[str, str]:
    """published name -> internal name for every persistent tensor of the model."""
    nested = _vision_nested(model)
    return {internal_to_published(k, vision_nested=nested): k for k in model.state_dict()}


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _no_init() -> contextlib.AbstractContextManager[Any]:
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()


def _fingerprint_update(h: "hashlib._Hash", name: str, tensor: torch.Tensor) -> None:
    h.update(name.encode())
    h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())


#: Tensors whose values identify a checkpoint for the encoder's ``name`` (cheap to hash, trained).
_FINGERPRINT_KEYS = ("latent_attention_model.latents", "image_newline", "language_model.norm.weight",
                     "multi_modal_projector.linear_2.bias")
#: config.json entries that change with how a copy was saved, not with what the model computes.
_VOLATILE_CONFIG_KEYS = ("torch_dtype", "dtype", "transformers_version", "_name_or_path")


def build_and_load(
    root: Path, spec: MMEmbedSpec, files: CheckpointFiles, *, pad_token_id: int, pad_embedding_id: int,
    device: torch.device, dtype: torch.dtype,
) -> tuple[MMEmbedModel, str]:
    """Allocate the network directly on ``device``/``dtype`` (no random init), check every key and shape,
    then copy the shards in. Returns the model and a fingerprint of its weights."""
    with _default_dtype(dtype), torch.device(device), _no_init():
        model = MMEmbedModel(spec, pad_token_id=pad_token_id, pad_embedding_id=pad_embedding_id)
    expected = _expected_keys(model)
    present = set(files.shapes)
    missing = sorted(set(expected) - present)
    unexpected = sorted(k for k in present - set(expected) if not k.endswith(_IGNORABLE_SUFFIXES))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:8]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:8]})")
        raise ModelLoadError(
            f"{root}: the checkpoint's tensors do not match MM-Embed's published layout as described by its "
            f"config.json: {'; '.join(parts)}. Re-download the checkpoint, or fix config.json if it was edited."
        )
    state = model.state_dict()
    wrong = [
        f"{pub}: checkpoint {list(files.shapes[pub])} vs config {list(state[internal].shape)}"
        for pub, internal in expected.items()
        if tuple(state[internal].shape) != files.shapes[pub]
    ]
    if wrong:
        raise ModelLoadError(
            f"{root}: {len(wrong)} tensors have shapes that config.json does not predict, e.g. {wrong[:5]}; "
            "config.json does not describe these weights"
        )
    marks: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for pub, tensor in files.tensors(sorted(expected)):
            state[expected[pub]].copy_(tensor)
            if pub in _FINGERPRINT_KEYS:
                marks[pub] = tensor  # as stored, so the name does not depend on the dtype we load in
    stable = {k: v for k, v in spec.raw.items() if k not in _VOLATILE_CONFIG_KEYS}
    h = hashlib.sha256(json.dumps(stable, sort_keys=True).encode())
    for pub in _FINGERPRINT_KEYS:
        _fingerprint_update(h, pub, marks[pub])
    model.eval()
    model.requires_grad_(False)
    return model, h.hexdigest()


# ================================================================================================
# Prompts, tokens and pixels
# ================================================================================================
def _token_content(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class PromptTokenizer:
    """Builds the hub's prompts and token ids with the checkpoint's own ``tokenizer.json``.

    The ``tokenizers`` library reads the published file as is; BOS and EOS are added here (``add_bos_token``
    from tokenizer_config.json, ``add_eos_token`` from config.json, as the hub code sets them).
    """

    def __init__(self, root: Path, *, image_token_id: int, add_eos_token: bool) -> None:
        from tokenizers import Tokenizer

        path = root / "tokenizer.json"
        if not path.is_file():
            raise ModelLoadError(f"{root}: tokenizer.json is missing (it is part of the MM-Embed checkpoint). {_DOWNLOAD_STEPS}")
        try:
            self.tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"{path} cannot be read by the tokenizers library: {exc}") from exc
        # A second copy that treats special-token strings in user text as plain text (see `encode`).
        self.literal = Tokenizer.from_str(self.tok.to_str())
        self.literal.encode_special_tokens = True
        cfg: dict[str, Any] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            if (root / name).is_file():
                cfg.update(_read_json(root / name))
        self.add_bos = bool(cfg.get("add_bos_token", True))
        self.add_eos = add_eos_token
        self.bos_id = self._id(_token_content(cfg.get("bos_token")) or "<s>", "bos")
        self.eos_id = self._id(_token_content(cfg.get("eos_token")) or "</s>", "eos")
        pad = _token_content(cfg.get("pad_token"))
        self.pad_id = self._id(pad, "pad") if pad else self.eos_id
        self.image_id = image_token_id
        if self.tok.id_to_token(image_token_id) != IMAGE_MARKER:
            raise ModelLoadError(
                f"{root}: config.json image_token_index {image_token_id} is "
                f"{self.tok.id_to_token(image_token_id)!r} in tokenizer.json, not {IMAGE_MARKER!r}"
            )

    def _id(self, token: str, what: str) -> int:
        tid = self.tok.token_to_id(token)
        if tid is None:
            raise ModelLoadError(f"the tokenizer has no {what} token {token!r}")
        return tid

    @staticmethod
    def render(item: Interleaved) -> list[str | None]:
        """The item as text segments and image slots (``None``), in the hub's layout.

        One image + text renders as the hub does, ``<image>\\n{text}``. Extension for interleaved items:
        every image becomes ``<image>\\n`` where it occurs; a text part that is followed by an image ends
        with a newline; consecutive text parts are joined by a newline.
        """
        out: list[str | None] = []
        text = ""
        for i, part in enumerate(item.parts):
            if isinstance(part, TextPart):
                text += ("\n" if i and isinstance(item.parts[i - 1], TextPart) else "") + part.text
            else:
                if text and not text[-1].isspace():
                    text += "\n"
                out.extend([text, None])
                text = "\n"
        out.append(text)
        return out

    def prompt(self, item: Interleaved, instruction: str | None, is_query: bool) -> tuple[str, list[str | None]]:
        """``(instruction_prefix, segments)``: the prompt is prefix + segments, images at the ``None`` slots."""
        segments = self.render(item)
        if not is_query:
            return "", segments
        prefix = INSTRUCTION_TEMPLATE.format(instruction=instruction) if instruction else ""
        segments[0] = prefix + QUERY_PREFIX + segments[0]
        return prefix, segments

    def encode(self, segments: list[str | None], n_images: int) -> list[int]:
        """Token ids without BOS/EOS; each image is one ``<image>`` id (expanded later).

        The whole prompt string is tokenised at once, as the hub's processor does. If user text itself
        contains a special-token string such as ``<image>`` (which would otherwise turn into an image slot),
        the text segments are tokenised separately with special tokens read as plain text instead.
        """
        text = IMAGE_MARKER.join(s for s in segments if s is not None) if n_images else segments[0] or ""
        ids = self.tok.encode(text, add_special_tokens=False).ids
        if ids.count(self.image_id) == n_images:
            return ids
        out: list[int] = []
        for seg in segments:
            if seg is None:
                out.append(self.image_id)
            elif seg:
                out.extend(self.literal.encode(seg, add_special_tokens=False).ids)
        return out

    def instruction_length(self, prefix: str) -> int:
        """Positions the hub masks out of pooling for a query with an instruction.

        The hub tokenises ``Instruct: {instruction}`` alone with BOS and (add_eos_token) EOS and masks that
        many leading positions; the EOS slot lands on the newline before ``Query:``.
        """
        if not prefix:
            return 0
        n = len(self.tok.encode(prefix[: -len("\n")], add_special_tokens=False).ids)
        return n + int(self.add_bos) + int(self.add_eos)

    def count(self, item: Interleaved) -> int:
        """Approximate token count of an item's text (for length-sorted batching)."""
        return sum(len(self.tok.encode(t, add_special_tokens=False).ids) for t in item.texts)


@dataclass(frozen=True)
class GlobalPatchProcessor:
    """MM-Embed's image input: LLaVA-NeXT's first ("global") patch only.

    The hub's processor resizes the whole image to ``size x size`` (aspect ratio not kept) and then runs
    the usual CLIP steps (resize shortest edge, centre crop, rescale, normalise), which leave a
    ``size x size`` image unchanged apart from rescale and normalise. The any-res tiles it also computes
    are thrown away by the hub code (``global_image_patch_only``), so we never compute them.
    """

    size: int
    crop: int
    resample: int
    rescale_factor: float
    do_rescale: bool
    do_normalize: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, raw: dict[str, Any], image_size: int, where: Path) -> "GlobalPatchProcessor":
        size_cfg = raw.get("size") or image_size
        size = (size_cfg.get("shortest_edge") or size_cfg.get("height")) if isinstance(size_cfg, dict) else size_cfg
        crop_cfg = raw.get("crop_size") or size
        crop = crop_cfg.get("height") if isinstance(crop_cfg, dict) else crop_cfg
        if not raw.get("do_center_crop", True):
            crop = size
        if size != image_size or crop != image_size:
            raise ModelLoadError(
                f"{where}: image size {size} / crop {crop} does not match the vision tower's image_size {image_size}"
            )
        mean = tuple(raw.get("image_mean", (0.48145466, 0.4578275, 0.40821073)))
        std = tuple(raw.get("image_std", (0.26862954, 0.26130258, 0.27577711)))
        if len(mean) != 3 or len(std) != 3:
            raise ModelLoadError(f"{where}: image_mean and image_std need three values each")
        return cls(
            size=int(size), crop=int(crop), resample=int(raw.get("resample", 3)),
            rescale_factor=float(raw.get("rescale_factor", 1 / 255)), do_rescale=bool(raw.get("do_rescale", True)),
            do_normalize=bool(raw.get("do_normalize", True)), mean=mean, std=std, raw=raw,  # type: ignore[arg-type]
        )

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        arrays = []
        for img in images:
            img = img.convert("RGB").resize((self.size, self.size), resample=Image.Resampling(self.resample))
            x = np.asarray(img)
            if self.do_rescale:
                x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
            else:
                x = x.astype(np.float32)
            if self.do_normalize:
                x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
            arrays.append(x.transpose(2, 0, 1))
        return torch.from_numpy(np.stack(arrays))


# ================================================================================================
# The encoder
# ================================================================================================
class MMEmbedEncoder(Encoder):
    """MM-Embed behind the :class:`~mmembed.encoders.base.Encoder` protocol.

    Build it with :func:`load_mmembed` (or ``mmembed.load_encoder(path)``). ``max_length`` counts tokens the
    way the hub does: text tokens, BOS/EOS, and one per image (each image then expands to 577 positions).
    Text is cut from the end when an item is too long; images are always kept.
    """

    def __init__(
        self,
        model: MMEmbedModel,
        tokenizer: PromptTokenizer,
        images: GlobalPatchProcessor,
        *,
        root: Path,
        name: str,
        device: torch.device,
        dtype: torch.dtype,
        max_length: int = DEFAULT_MAX_LENGTH,
        image_policy: Any = None,
    ) -> None:
        if not isinstance(max_length, int) or max_length < 4:
            raise ValueError(f"max_length must be an integer >= 4, got {max_length!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.images = images
        self.root = root
        self.name = name
        self.dim = model.spec.hidden_size
        self.device = device
        self.dtype = dtype
        self.max_length = max_length
        self.max_text_tokens = max_length  # text and one token per image share the window (see above)
        if image_policy is not None:
            self.image_policy = image_policy

    # ---- batching --------------------------------------------------------------------------------------
    def _length_key(self, item: Interleaved) -> int:
        return self.tokenizer.count(item) + len(item.images) * self.model.spec.image_tokens

    def _truncate(self, ids: list[int], budget: int, where: str) -> list[int]:
        if len(ids) <= budget:
            return ids
        n_images = ids.count(self.tokenizer.image_id)
        if n_images > budget:
            raise InputError(f"{where} has {n_images} images; max_length {self.max_length} leaves room for {budget}")
        excess = len(ids) - budget
        kept: list[int] = []
        for tid in reversed(ids):  # drop text tokens from the end, keep every image slot
            if excess and tid != self.tokenizer.image_id:
                excess -= 1
                continue
            kept.append(tid)
        return kept[::-1]

    def prepare(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool) -> PreparedBatch:
        """Prompts -> token ids -> image slots expanded -> right-padded tensors (on the CPU)."""
        tok = self.tokenizer
        per_image = self.model.spec.image_tokens
        budget = self.max_length - int(tok.add_bos) - int(tok.add_eos)
        rows: list[tuple[list[int], list[bool]]] = []
        instr_lens: list[int] = []
        pictures: list[Image.Image] = []
        cut = 0
        for i, item in enumerate(items):
            prefix, segments = tok.prompt(item, instruction, is_query)
            n_images = len(item.images)
            full = tok.encode(segments, n_images)
            ids = self._truncate(full, budget, f"item {i} ({item!r})")
            cut += len(ids) < len(full)
            ids = [tok.bos_id] * tok.add_bos + ids + [tok.eos_id] * tok.add_eos
            n_instr = tok.instruction_length(prefix)
            if n_instr >= len(ids):
                raise InputError(
                    f"the instruction takes {n_instr} tokens and max_length {self.max_length} leaves nothing of "
                    f"item {i} ({item!r}) to pool; raise max_length or shorten the instruction"
                )
            expanded: list[int] = []
            is_image: list[bool] = []
            for tid in ids:
                slots = per_image if tid == tok.image_id else 1
                expanded.extend([tid] * slots)
                is_image.extend([tid == tok.image_id] * slots)
            rows.append((expanded, is_image))
            # the instruction precedes every image, so its length is unchanged by the expansion
            instr_lens.append(n_instr)
            pictures.extend(p.image for p in item.images)
        seq = max(len(r[0]) for r in rows)
        n = len(rows)
        input_ids = torch.full((n, seq), tok.pad_id, dtype=torch.long)
        attention = torch.zeros((n, seq), dtype=torch.bool)
        image_mask = torch.zeros((n, seq), dtype=torch.bool)
        for r, (ids_r, img_r) in enumerate(rows):
            input_ids[r, : len(ids_r)] = torch.tensor(ids_r, dtype=torch.long)
            attention[r, : len(ids_r)] = True
            image_mask[r, : len(ids_r)] = torch.tensor(img_r, dtype=torch.bool)
        pool = attention.clone()
        for r, k in enumerate(instr_lens):
            pool[r, :k] = False
        pixels = self.images(pictures) if pictures else None
        self._report_truncated(cut, len(items), self.max_length)
        return PreparedBatch(input_ids, attention, pool, image_mask, pixels, instr_lens, [len(r[0]) for r in rows])

    def _encode_batch(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool) -> torch.Tensor:
        batch = self.prepare(items, instruction=instruction, is_query=is_query).to(self.device)
        with torch.inference_mode():
            return self.model(batch)

    # ---- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, max_shard_bytes: int = 5 * 1024**3) -> Path:
        """Write the model in the published hub layout (config.json, sharded safetensors with the published
        key names + index, tokenizer and image processor files), loadable by :func:`load_mmembed`."""
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        nested = _vision_nested(self.model)
        tensors = {internal_to_published(k, vision_nested=nested): v.detach().contiguous().cpu()
                   for k, v in self.model.state_dict().items()}
        shards: list[dict[str, torch.Tensor]] = [{}]
        size = 0
        for key in sorted(tensors):
            nbytes = tensors[key].numel() * tensors[key].element_size()
            if shards[-1] and size + nbytes > max_shard_bytes:
                shards.append({})
                size = 0
            shards[-1][key] = tensors[key]
            size += nbytes
        weight_map: dict[str, str] = {}
        for i, shard in enumerate(shards, start=1):
            fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(out / fname), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, fname))
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        (out / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
        config = dict(self.model.spec.raw)
        config["torch_dtype"] = str(self.dtype).replace("torch.", "")
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        (out / PREPROCESSOR_FILE).write_text(json.dumps(self.images.raw, indent=2))
        for name in TOKENIZER_FILES:
            src = self.root / name
            if src.is_file() and src.resolve() != (out / name).resolve():
                shutil.copyfile(src, out / name)
        return out


# ================================================================================================
# Loaders (registry targets)
# ================================================================================================
def load_mmembed(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    **kwargs: Any,
) -> MMEmbedEncoder:
    """Load an MM-Embed checkpoint directory in the hub layout, without remote code.

    Keyword arguments: ``max_length`` (default 4096, counted as the hub does), ``name`` (the identifier
    stored on Chroma collections; default ``mm-embed:<fingerprint of config and weights>``), and the image
    policy options ``image_policy`` / ``allow_remote`` / ``allow_private_addresses``.
    """
    policy = image_policy_from_kwargs(kwargs)
    max_length = kwargs.pop("max_length", DEFAULT_MAX_LENGTH)
    name = kwargs.pop("name", None)
    if kwargs:
        raise TypeError(f"load_mmembed() got unexpected keyword arguments {sorted(kwargs)}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ModelLoadError(f"{root} is not a directory. {_DOWNLOAD_STEPS}")
    raw = _read_json(root / CONFIG_FILE)
    files = CheckpointFiles.read(root)
    spec = parse_spec(raw, files, root)
    tokenizer = PromptTokenizer(root, image_token_id=spec.image_token_id, add_eos_token=spec.add_eos_token)
    pre = root / PREPROCESSOR_FILE
    images = GlobalPatchProcessor.from_config(_read_json(pre) if pre.is_file() else {}, spec.vision.image_size, pre)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    model, fingerprint = build_and_load(
        root, spec, files, pad_token_id=tokenizer.pad_id, pad_embedding_id=tokenizer.eos_id, device=dev, dtype=dt
    )
    return MMEmbedEncoder(
        model, tokenizer, images, root=root, name=name or f"mm-embed:{fingerprint[:16]}",
        device=dev, dtype=dt, max_length=max_length, image_policy=policy,
    )


def resolve_hub_cache(repo_id: str = HUB_NAME, *, cache_dir: str | os.PathLike[str] | None = None,
                      revision: str | None = None) -> Path:
    """The local snapshot directory of ``repo_id`` in the Hugging Face cache (never downloads)."""
    from huggingface_hub import constants, try_to_load_from_cache

    where = cache_dir or constants.HF_HUB_CACHE
    found = try_to_load_from_cache(repo_id, CONFIG_FILE, cache_dir=cache_dir, revision=revision)
    if not isinstance(found, str):
        raise ModelLoadError(f"{repo_id} is not in the Hugging Face cache ({where}). {_DOWNLOAD_STEPS}")
    root = Path(found).parent
    if not ((root / INDEX_FILE).is_file() or (root / SINGLE_FILE).is_file()):
        raise ModelLoadError(
            f"{repo_id} is only partly in the Hugging Face cache ({root} has config.json but no weights). "
            f"{_DOWNLOAD_STEPS}"
        )
    return root


def load_from_hub_cache(
    name: str = HUB_NAME,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    **kwargs: Any,
) -> MMEmbedEncoder:
    """Registry target for ``"nvidia/MM-Embed"``: the Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``, or
    ``cache_dir=``), downloading the files this backend reads once when they are not there (see
    :mod:`mmembed.hub`; ``HF_HUB_OFFLINE=1`` / ``local_files_only=True`` use the cache only).
    ``revision=`` picks a revision."""
    from .registry import load_from_hub

    return load_from_hub(name, device=device, dtype=dtype, **kwargs)  # type: ignore[return-value]
