"""Which :class:`~mmembed.train.backends.TrainableBackend` fine-tunes a loaded encoder.

The dispatcher sits above both backends' modules (:mod:`mmembed.train.backends` for mmembed-mini,
:mod:`mmembed.train.lora` for transformers CLIP/SigLIP), so neither imports the other's caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .backends import MiniBackend, TrainableBackend, TrainingError
from .lora import HFClipBackend

_UNSUPPORTED = {
    "OpenClipEncoder": ("open_clip", "convert the model to a transformers CLIP directory (that backend trains "
                        "with LoRA)"),
    "MMEmbedEncoder": ("MM-Embed (LLaVA-NeXT)", "an 8B model needs a GPU to fine-tune; the same LoRA path could "
                       "apply to its language model but it is not built or tested here"),
}


def backend_for(encoder: Any, *, mini_only: Sequence[str] = (), lora_r: int | None = None,
                lora_alpha: float | None = None, **options: Any) -> TrainableBackend:
    """The :class:`TrainableBackend` for a loaded encoder, or :class:`TrainingError` saying what is missing.

    ``mini_only``: names of mmembed-mini-only options the caller set explicitly (CLI flags such as
    ``--image-lr``); another backend refuses them instead of ignoring them. ``lora_r`` / ``lora_alpha`` are
    for the LoRA backend and refused for mmembed-mini.
    """
    from ..encoders.clip import HFClipEncoder
    from ..encoders.mini import MiniEncoder

    if isinstance(encoder, MiniEncoder):
        lora = [n for n, v in (("--lora-r", lora_r), ("--lora-alpha", lora_alpha)) if v is not None]
        if lora:
            raise TrainingError(f"{', '.join(lora)} configure LoRA for transformers CLIP/SigLIP models; "
                                "mmembed-mini trains its task adapters instead: drop them")
        return MiniBackend(encoder, **options)
    if isinstance(encoder, HFClipEncoder):
        if mini_only:
            raise TrainingError(f"{', '.join(mini_only)} only apply to mmembed-mini (its image tower); the "
                                "CLIP/SigLIP backend trains LoRA adapters on both towers at --lr: drop them")
        parts = options.get("parts") or ("adapters", "temperature")
        return HFClipBackend(encoder, parts=parts, lora_r=lora_r, lora_alpha=lora_alpha,
                             image_policy=options.get("image_policy"))
    kind, why = _UNSUPPORTED.get(type(encoder).__name__, (type(encoder).__name__, "no training backend exists"))
    raise TrainingError(
        f"`mmembed train` cannot fine-tune the {kind} backend yet: {why}. Supported: mmembed-mini (--encoder "
        "default or an mmembed-mini directory) and transformers CLIP/SigLIP/SigLIP2 directories (LoRA via "
        "peft); see docs/training.md.")


__all__ = ["backend_for"]
