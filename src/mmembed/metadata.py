"""Metadata sanitising: the one place user metadata is made acceptable to Chroma.

Chroma accepts flat dicts of str/int/float/bool values (and non-empty homogeneous lists of those); it rejects
nested dicts, empty dicts and other types. Rather than letting a batch fail deep inside Chroma, we flatten
nested dicts with dotted keys, turn other values into strings, drop ``None`` and empty containers, and return
``None`` for an empty result. Keys starting with ``mmembed:`` are reserved for the library.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .errors import InputError, describe

RESERVED_PREFIX = "mmembed:"
Scalar = str | int | float | bool


def _scalar(value: Any) -> Scalar | None:
    if isinstance(value, bool) or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return value
    if value is None:
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return _scalar(value.item())
        except Exception:  # noqa: BLE001
            pass
    return str(value)


def sanitize_metadata(metadata: Mapping[str, Any] | None, *, where: str = "metadata") -> dict[str, Any] | None:
    """Return a Chroma-safe flat dict (or ``None`` when nothing is left)."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InputError(f"{where} must be a dict, got {describe(metadata)}")
    out: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                if not isinstance(k, str):
                    k = str(k)
                visit(f"{prefix}.{k}" if prefix else k, v)
            return
        if not prefix:
            raise InputError(f"{where} has an empty key")
        if prefix.startswith(RESERVED_PREFIX):
            raise InputError(f"{where} key {prefix!r} uses the reserved prefix {RESERVED_PREFIX!r}")
        if isinstance(value, (list, tuple, set, frozenset)):
            items = [_scalar(v) for v in value if v is not None]
            if not items:
                return
            kinds = {type(v) for v in items}
            if len(kinds) == 1 and not any(isinstance(v, Mapping) for v in value):
                out[prefix] = list(items)
            else:
                out[prefix] = json.dumps([v if isinstance(v, (str, int, float, bool)) else str(v) for v in items])
            return
        scalar = _scalar(value)
        if scalar is not None:
            out[prefix] = scalar

    visit("", metadata)
    return out or None


def user_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Metadata as the user gave it (library keys removed)."""
    if not metadata:
        return {}
    return {k: v for k, v in metadata.items() if not k.startswith(RESERVED_PREFIX)}
