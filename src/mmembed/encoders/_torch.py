"""Device and dtype choices shared by torch backends (correct by construction on GPU, exercised on CPU)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError, describe


def check_device(device: Any) -> torch.device | None:
    """``device`` as a ``torch.device`` (``None`` stays ``None``), or an InputError naming it: a wrong type,
    a name torch does not know, or an accelerator this machine does not have."""
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (str, torch.device)):
        raise InputError(f"device must be a str such as 'cpu', 'cuda', 'cuda:1' or 'mps' (or None to pick one), "
                         f"got {describe(device)}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise InputError(f"device {device!r} is not a device torch knows ({exc}); use 'cpu', 'cuda', 'cuda:N' "
                         "or 'mps', or None to pick one") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r}: CUDA is not available on this machine (torch "
                             f"{torch.__version__}); use device='cpu' or None")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError(f"device {device!r}: Apple MPS is not available on this machine; use 'cpu' or None")
    return dev


def check_dtype(dtype: Any) -> None:
    """An InputError naming ``dtype`` unless it is ``None``, a ``torch.dtype`` or a known name."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return
    if not isinstance(dtype, str):
        raise InputError(f"dtype must be a str such as 'float32', 'float16' or 'bfloat16' (or None), "
                         f"got {describe(dtype)}")
    if dtype.lower() not in _DTYPES:
        raise InputError(f"dtype {dtype!r} is not supported; use one of {sorted(_DTYPES)} or None")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` picks CUDA when present, then Apple MPS, else CPU."""
    if device is not None:
        return check_device(device)  # type: ignore[return-value]
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
    check_dtype(dtype)
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        return _DTYPES[dtype.lower()]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def model_info(module: torch.nn.Module) -> dict[str, Any]:
    p = next(module.parameters(), None)
    return {"device": str(p.device) if p is not None else "cpu", "dtype": str(p.dtype) if p is not None else None}
