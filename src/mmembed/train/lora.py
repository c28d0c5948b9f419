"""LoRA fine-tuning of the transformers CLIP / SigLIP / SigLIP2 backend (``hf-clip``) with ``peft``.

:class:`HFClipBackend` wraps the loaded encoder's transformers model with low-rank adapters on the attention
projections (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` of every ``self_attn`` block) of *both* towers;
every base weight stays frozen. The temperature (``logit_scale``) trains too, as the mini backend's does.
SigLIP's ``logit_bias`` stays frozen: ``mmembed train`` uses a softmax (InfoNCE) loss, which is invariant to a
bias shared by a row, so the bias would get no gradient. SigLIP's attention-pooling head is left alone: its
``nn.MultiheadAttention`` reads ``out_proj.weight`` directly, so a LoRA wrapper there would be trained as a
no-op and then change the vectors when merged.

Embedding follows :class:`mmembed.encoders.clip.HFClipEncoder` exactly (same text construction with the
instruction prefixed for queries, same tokenizer arguments, same image processor, same CLIP_SF fusion), so
training and serving give the same vectors; texts are tokenised once and each distinct image is decoded and
preprocessed once. On save the adapters are merged into a copy of the weights (``merge_and_unload``) and the
model, tokenizer and image processor are written with ``save_pretrained``: the directory is a plain
transformers CLIP/SigLIP directory that ``mmembed.load_encoder`` detects as ``hf-clip`` and serves without
``peft``.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..images import ImagePolicy
from ..inputs import Interleaved
from .backends import PARTS, TrainableBackend, TrainingError, decode_images

#: Attention projections LoRA adapts, in both towers (a regex on module names, as peft accepts): the
#: ``self_attn`` blocks of the text and vision encoders, never SigLIP's pooling head.
TARGET_MODULES = r".*_model\.encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|out_proj)"
DEFAULT_R = 8
DEFAULT_ALPHA = 16.0
DEFAULT_DROPOUT = 0.0
#: LoRA's A matrices are drawn from this seed, so two runs (or a run and its resumption) start identically.
INIT_SEED = 0
#: written beside the weights: what the fine-tuning was (the transformers config stays untouched)
FINETUNE_FILE = "mmembed_finetune.json"


def _require_peft() -> Any:
    try:
        import peft
    except ImportError as exc:
        raise TrainingError(
            f"fine-tuning a CLIP/SigLIP model uses LoRA adapters from peft, which cannot be imported ({exc}); "
            'install it with `pip install "mmembed[train]"`') from None
    return peft


class HFClipBackend(TrainableBackend):
    """Fine-tunes an ``hf-clip`` encoder (transformers CLIP/SigLIP/SigLIP2) with LoRA (module docstring).

    Options: ``parts`` (``adapters``: the LoRA weights of both towers; ``temperature``: the logit scale;
    ``image-tower`` is refused -- full tower training is mmembed-mini only), ``lora_r`` / ``lora_alpha`` /
    ``lora_dropout`` (default 8 / 16 / 0; a dropout above 0 draws from torch's global generator, so a resumed
    run is then no longer bit-identical), ``image_policy``, ``text_batch`` / ``image_batch``.

    Memory: every distinct image is kept preprocessed (float32, about 0.6 MB at 224 px) for the whole run.
    """

    kind = "hf-clip-lora"

    def __init__(self, encoder: Any, *, parts: Sequence[str] = ("adapters", "temperature"),
                 lora_r: int | None = None, lora_alpha: float | None = None, lora_dropout: float | None = None,
                 image_policy: ImagePolicy | None = None, text_batch: int = 64, image_batch: int = 64) -> None:
        from ..encoders.clip import HFClipEncoder

        if not isinstance(encoder, HFClipEncoder):
            raise TrainingError(f"HFClipBackend needs a transformers CLIP/SigLIP encoder, got {type(encoder).__name__}")
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            raise TrainingError(f"unknown trainable part(s) {unknown}; the CLIP/SigLIP backend trains adapters "
                                "(LoRA on both towers) and temperature")
        if "image-tower" in parts:
            raise TrainingError(
                "--train image-tower (full image-tower training) is for mmembed-mini only; the CLIP/SigLIP backend "
                "trains LoRA adapters on the attention of both towers (--train adapters) and the temperature "
                "(--train temperature)")
        if not parts:
            raise TrainingError("nothing to train: give adapters and/or temperature")
        r = DEFAULT_R if lora_r is None else int(lora_r)
        alpha = DEFAULT_ALPHA if lora_alpha is None else float(lora_alpha)
        dropout = DEFAULT_DROPOUT if lora_dropout is None else float(lora_dropout)
        if r < 1:
            raise TrainingError(f"LoRA rank must be >= 1, got {r}")
        if alpha <= 0:
            raise TrainingError(f"LoRA alpha must be > 0, got {alpha}")
        if not 0 <= dropout < 1:
            raise TrainingError(f"LoRA dropout must be in [0, 1), got {dropout}")
        peft = _require_peft()
        self.encoder = encoder
        self.parts = tuple(p for p in PARTS if p in parts)
        self.r, self.alpha, self.dropout = r, alpha, dropout
        self.policy = image_policy or encoder.image_policy
        self.text_batch = text_batch
        self.image_batch = image_batch
        self.cache = None  # the text tower trains: nothing to cache across runs
        base = encoder.model
        if next(base.parameters()).dtype != torch.float32:
            base.float()
            encoder.dtype = torch.float32
        if any("lora_" in n for n, _ in base.named_parameters()):
            raise TrainingError(f"{encoder.name}: the model already carries LoRA adapters (a backend was built on "
                                "this encoder before); load the encoder afresh")
        config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=TARGET_MODULES,
                                 bias="none")
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(INIT_SEED)
            warnings.simplefilter("ignore", FutureWarning)  # transformers deprecations peft still calls
            # injects the adapters into ``base`` in place, so ``encoder`` itself serves the trained model
            self.peft = peft.get_peft_model(base, config)
        self.model = base
        self.lora_names = [n for n, _ in base.named_parameters() if "lora_" in n]
        if not self.lora_names:
            raise TrainingError(f"{encoder.name}: found no attention projections to adapt ({TARGET_MODULES})")
        self.has_scale = isinstance(getattr(base, "logit_scale", None), torch.nn.Parameter)
        for name, p in base.named_parameters():
            if "lora_" in name:
                p.requires_grad_("adapters" in self.parts)
            else:
                p.requires_grad_(name == "logit_scale" and "temperature" in self.parts)
        if not self.has_scale:
            # a model without one still needs a temperature for the loss: a fixed CLIP-like one
            self._scale = torch.nn.Parameter(torch.tensor(float(torch.log(torch.tensor(1 / 0.07)))),
                                             requires_grad=False)
        self.training = False
        self.train(False)
        # filled by prepare()
        self.items: list[Interleaved] = []
        self.instructions: list[str] = []
        self.item_images: list[list[int]] = []
        self.pixels: list[dict[str, torch.Tensor]] = []
        self._tokens: dict[str, dict[str, torch.Tensor]] = {}

    @property
    def logit_scale(self) -> torch.nn.Parameter:
        return self.model.logit_scale if self.has_scale else self._scale

    # ---- preparation ----------------------------------------------------------------------------------
    def _tokenise(self, texts: Sequence[str]) -> None:
        """Tokenise new texts exactly as ``HFClipEncoder.embed_texts`` does, padded to the model's length
        (``embed`` trims the padding columns a batch does not need, which is what ``padding=True`` gives)."""
        from ..encoders.clip import bounded_text

        enc = self.encoder
        new = [t for t in dict.fromkeys(texts) if t not in self._tokens]
        for s in range(0, len(new), 256):
            chunk = new[s:s + 256]
            cut = [bounded_text(t, enc.max_text_tokens, enc._count_tokens) for t in chunk]
            out = enc.tokenizer(cut, padding="max_length", truncation=True, max_length=enc.max_text_tokens,
                                return_tensors="pt")
            keep = {k: v for k, v in out.items() if k in ("input_ids", "attention_mask")}
            for i, t in enumerate(chunk):
                self._tokens[t] = {k: v[i:i + 1] for k, v in keep.items()}

    def prepare(self, items: Sequence[Interleaved], where: Sequence[str], instructions: Sequence[str],
                log: Callable[[str], None]) -> None:
        from ..encoders.clip import item_text

        self.items = list(items)
        self.instructions = list(instructions)
        texts = [t for t in (item_text(it, None) for it in self.items) if t is not None]
        # instructed queries: "{instruction} {text}" is only known per (query, instruction); those are
        # tokenised on first use and kept. Image-only queries use the instruction alone: tokenise it now.
        self._tokenise([*texts, *self.instructions])
        proc = self.encoder.image_processor

        def features(img: Any) -> dict[str, torch.Tensor]:
            feats = proc(images=[img], return_tensors="pt")
            return {k: v for k, v in feats.items() if isinstance(v, torch.Tensor)}

        self.pixels, self.item_images = decode_images(items, where, self.policy, features)
        log(f"prepared {len(items)} items: {len(self._tokens)} distinct texts, {len(self.pixels)} distinct images "
            f"(LoRA r={self.r}, alpha={self.alpha:g} on {len(self.lora_names) // 2} attention projections)")

    # ---- embedding ------------------------------------------------------------------------------------
    def _text_features(self, texts: list[str]) -> torch.Tensor:
        from ..encoders.clip import _pooled

        self._tokenise(texts)
        batch = {k: torch.cat([self._tokens[t][k] for t in texts]) for k in self._tokens[texts[0]]}
        mask = batch.get("attention_mask")
        if mask is not None and not self.encoder.pad_to_max_length:
            used = mask.any(dim=0)  # padding=True pads to the batch's longest text: drop all-padding columns
            batch = {k: v[:, used] for k, v in batch.items()}
        dev = self.encoder.device
        return _pooled(self.model.get_text_features(**{k: v.to(dev) for k, v in batch.items()}))

    def _image_features(self, rows: list[int]) -> torch.Tensor:
        from ..encoders.clip import _pooled

        dev, dt = self.encoder.device, self.encoder.dtype
        inputs = {}
        for k in self.pixels[rows[0]]:
            v = torch.cat([self.pixels[r][k] for r in rows]).to(dev)
            inputs[k] = v.to(dt) if v.is_floating_point() else v
        return _pooled(self.model.get_image_features(**inputs))

    def _fused(self, idx: list[int], instr: list[str | None]) -> torch.Tensor:
        """CLIP_SF fusion, as ``ClipFamilyEncoder._encode_batch``: normalised text + normalised mean of the
        normalised images, then normalised."""
        from ..encoders.clip import item_text

        texts: dict[str, int] = {}
        t_rows: list[int | None] = []
        for i, ins in zip(idx, instr):
            t = item_text(self.items[i], ins)
            t_rows.append(None if t is None else texts.setdefault(t, len(texts)))
        img_rows = sorted({r for i in idx for r in self.item_images[i]})
        pos = {r: k for k, r in enumerate(img_rows)}
        t_emb = i_emb = None
        if texts:
            t_emb = torch.cat([F.normalize(self._text_features(list(texts)[s:s + self.text_batch]).float(), dim=-1)
                               for s in range(0, len(texts), self.text_batch)])
        if img_rows:
            i_emb = torch.cat([F.normalize(self._image_features(img_rows[s:s + self.image_batch]).float(), dim=-1)
                               for s in range(0, len(img_rows), self.image_batch)])
        rows = []
        for i, t_row in zip(idx, t_rows):
            parts = []
            if t_row is not None:
                parts.append(t_emb[t_row])  # type: ignore[index]
            if self.item_images[i]:
                sel = torch.tensor([pos[r] for r in self.item_images[i]])
                parts.append(F.normalize(i_emb[sel].mean(dim=0), dim=-1))  # type: ignore[index]
            if not parts:
                raise TrainingError(f"item {i} has neither text nor images")
            rows.append(parts[0] if len(parts) == 1 else parts[0] + parts[1])
        return F.normalize(torch.stack(rows), dim=-1)

    def embed(self, items: torch.Tensor, instructions: torch.Tensor | None, *, is_query: bool,
              generator: torch.Generator | None = None, adapt: bool = True) -> torch.Tensor:
        idx = [int(i) for i in items.tolist()]
        instr: list[str | None] = [None] * len(idx)
        if is_query and instructions is not None:
            instr = [self.instructions[j] if j >= 0 else None for j in instructions.tolist()]
        if not adapt:
            with torch.no_grad(), self.peft.disable_adapter():
                return self._fused(idx, instr)
        if not self.training:
            with torch.no_grad():
                return self._fused(idx, instr)
        return self._fused(idx, instr)

    # ---- optimisation and state -------------------------------------------------------------------------
    def _lora_params(self) -> list[torch.nn.Parameter]:
        named = dict(self.model.named_parameters())
        return [named[n] for n in self.lora_names]

    def parameter_groups(self, lr: float, image_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = []
        if "adapters" in self.parts:
            groups.append({"params": self._lora_params(), "lr": lr, "weight_decay": weight_decay})
        if "temperature" in self.parts and self.has_scale:
            groups.append({"params": [self.model.logit_scale], "lr": lr, "weight_decay": 0.0})
        if not groups:
            raise TrainingError("nothing to train: this model has no logit scale, so --train temperature alone "
                                "leaves no trainable parameter; add adapters")
        return groups

    def _state_names(self) -> list[str]:
        return [*self.lora_names, *(["logit_scale"] if self.has_scale else [])]

    def state_dict(self) -> dict[str, torch.Tensor]:
        named = dict(self.model.named_parameters())
        return {n: named[n].detach().clone() for n in self._state_names()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        names = self._state_names()
        if set(state) != set(names):
            missing, extra = sorted(set(names) - set(state)), sorted(set(state) - set(names))
            raise TrainingError(f"checkpoint does not match this LoRA model (missing {missing[:3]}, unexpected "
                                f"{extra[:3]}); resume with the same --encoder and LoRA options")
        named = dict(self.model.named_parameters())
        with torch.no_grad():
            for n in names:
                if named[n].shape != state[n].shape:
                    raise TrainingError(f"checkpoint tensor {n} has shape {tuple(state[n].shape)}, the model "
                                        f"{tuple(named[n].shape)}; resume with the same LoRA options")
                named[n].copy_(state[n])

    def train(self, mode: bool = True) -> None:
        """The frozen base always runs in eval mode (no dropout: steps stay a function of the seed, so a
        resumed run matches an uninterrupted one); only LoRA's own dropout, when asked for, follows ``mode``."""
        self.training = mode
        self.model.eval()
        if mode and self.dropout > 0:
            for name, mod in self.model.named_modules():
                if name.endswith("lora_dropout"):
                    mod.train(True)

    def after_step(self) -> None:
        if self.has_scale:
            with torch.no_grad():
                self.model.logit_scale.clamp_(0, float(torch.log(torch.tensor(100.0))))

    def merged_model(self) -> Any:
        """A copy of the model with the adapters merged into the weights (a plain transformers model)."""
        merged = copy.deepcopy(self.peft).merge_and_unload()
        merged.eval()
        for p in merged.parameters():
            p.requires_grad_(False)
        return merged

    def save(self, out: Path, *, extra_config: dict[str, Any]) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        merged = self.merged_model()
        leftover = [n for n, _ in merged.named_parameters() if "lora_" in n or "base_layer" in n]
        if leftover:
            raise TrainingError(f"merging the LoRA adapters left peft parameters behind: {leftover[:3]}")
        merged.save_pretrained(out)
        self.encoder.tokenizer.save_pretrained(out)
        self.encoder.image_processor.save_pretrained(out)
        info = {**extra_config, "lora": {"r": self.r, "alpha": self.alpha, "dropout": self.dropout,
                                         "target_modules": TARGET_MODULES, "merged": True}}
        (out / FINETUNE_FILE).write_text(json.dumps(info, indent=2) + "\n")
        return out

    def describe(self) -> dict[str, Any]:
        named = dict(self.model.named_parameters())
        lora = sum(named[n].numel() for n in self.lora_names)
        base = sum(p.numel() for n, p in named.items() if "lora_" not in n)
        tower = {"text": sum(named[n].numel() for n in self.lora_names if n.startswith("text_model.")),
                 "vision": sum(named[n].numel() for n in self.lora_names if n.startswith("vision_model."))}
        return {"backend": self.kind, "trained": list(self.parts),
                "parameters": {"lora": lora, "lora_text": tower["text"], "lora_vision": tower["vision"],
                               "base (frozen)": base},
                "text_tower": "LoRA on attention q/k/v/out (base frozen)",
                "lora": {"r": self.r, "alpha": self.alpha, "dropout": self.dropout}}


__all__ = ["DEFAULT_ALPHA", "DEFAULT_DROPOUT", "DEFAULT_R", "FINETUNE_FILE", "HFClipBackend", "TARGET_MODULES"]
