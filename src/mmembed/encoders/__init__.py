"""Encoders: the protocol, the registry and the backends (imported lazily)."""

from .base import Encoder, l2_normalize
from .registry import available_encoders, detect_backend, load_encoder, register_backend, register_encoder

__all__ = [
    "Encoder",
    "available_encoders",
    "detect_backend",
    "l2_normalize",
    "load_encoder",
    "register_backend",
    "register_encoder",
]
