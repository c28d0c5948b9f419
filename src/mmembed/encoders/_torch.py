"""Device and dtype choices shared by torch backends (correct by construction on GPU, exercised on CPU)."""

from __future__ import annotations

from typing import Any

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` picks CUDA when present, then Apple MPS, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` means half precision on accelerators (bf16 where supported) and fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        try:
            return _DTYPES[dtype.lower()]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def model_info(module: torch.nn.Module) -> dict[str, Any]:
    p = next(module.parameters(), None)
    return {"device": str(p.device) if p is not None else "cpu", "dtype": str(p.dtype) if p is not None else None}
