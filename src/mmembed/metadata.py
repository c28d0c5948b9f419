"""Metadata sanitising: the one place user metadata is made acceptable to Chroma.

Chroma accepts flat dicts of str/int/float/bool values (and non-empty homogeneous lists of those); it rejects
nested dicts, empty dicts, other types, keys starting with ``$`` or ``#``, integers beyond 64 bits and text that
is not valid Unicode. Rather than letting a whole batch fail deep inside Chroma, we flatten nested dicts with
dotted keys, write values with a well-defined text form (paths, dates, UUIDs, decimals, enums, out-of-range
integers) as strings, refuse any other object (its ``repr`` would be stored as if it were data), escape lone surrogates (what
``os.fsdecode`` makes of non-UTF-8 file names), drop ``None`` and empty containers, and return ``None`` for an
empty result. Keys that cannot be stored are refused with an error naming them: ``mmembed:`` is reserved for
the library, ``$``/``#`` and ``chroma:document`` for Chroma.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import math
import os
import uuid
from collections.abc import Mapping
from typing import Any

from .errors import InputError, describe

RESERVED_PREFIX = "mmembed:"
CHROMA_RESERVED_STARTS = ("$", "#")
CHROMA_RESERVED_KEYS = frozenset({"chroma:document"})
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Scalar = str | int | float | bool
#: values stored as their ``str()``: their text form is the value, not a memory address
TEXT_FORM_TYPES = (datetime.date, datetime.time, datetime.timedelta, uuid.UUID, decimal.Decimal)


class _Unstorable(Exception):
    def __init__(self, value: Any) -> None:
        super().__init__(value)
        self.value = value


def valid_text(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udcxx`` escapes, so it can be stored as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _scalar(value: Any) -> Scalar | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else str(value)  # Chroma would round it to a float
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return value
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return _scalar(value.value)
    if isinstance(value, os.PathLike):
        return valid_text(os.fspath(value) if isinstance(os.fspath(value), str) else os.fsdecode(value))
    if isinstance(value, TEXT_FORM_TYPES):
        return valid_text(str(value))
    if callable(getattr(value, "item", None)) and type(value).__module__.split(".")[0] in ("numpy", "torch"):
        # numpy scalars and one-element arrays/tensors
        try:
            item = value.item()
        except Exception:  # noqa: BLE001
            raise _Unstorable(value) from None
        return _scalar(item)
    raise _Unstorable(value)


def _nested_json(value: Any) -> str:
    """A dict or list inside a metadata list, as JSON text (Chroma lists hold scalars only)."""
    def default(obj: Any) -> Any:
        scalar = _scalar(obj)  # raises _Unstorable for objects without a text form
        return scalar

    return json.dumps(value, sort_keys=True, default=default)


def sanitize_metadata(metadata: Mapping[str, Any] | None, *, where: str = "metadata") -> dict[str, Any] | None:
    """Return a Chroma-safe flat dict (or ``None`` when nothing is left)."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InputError(f"{where} must be a dict, got {describe(metadata)}")
    out: dict[str, Any] = {}
    seen: set[str] = set()

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                k = valid_text(k if isinstance(k, str) else str(k))
                visit(f"{prefix}.{k}" if prefix else k, v)
            return
        if not prefix:
            raise InputError(f"{where} has an empty key")
        if prefix.startswith(RESERVED_PREFIX):
            raise InputError(f"{where} key {prefix!r} uses the reserved prefix {RESERVED_PREFIX!r}")
        if prefix.startswith(CHROMA_RESERVED_STARTS) or prefix in CHROMA_RESERVED_KEYS:
            raise InputError(
                f"{where} key {prefix!r} is reserved by Chroma (keys may not start with '$' or '#', nor be "
                "'chroma:document'); rename it"
            )
        if prefix in seen:
            raise InputError(f"{where} key {prefix!r} appears twice once nested dicts are flattened")
        seen.add(prefix)
        try:
            store_leaf(prefix, value)
        except _Unstorable as exc:
            raise InputError(
                f"{where} key {prefix!r}: cannot store {describe(exc.value)} ({type(exc.value).__name__}); "
                "metadata values must be str, int, float, bool, None, a list of those, or a nested dict "
                "(paths, dates, UUIDs, decimals and enums are stored as text): convert it first"
            ) from None

    def store_leaf(prefix: str, value: Any) -> None:
        if isinstance(value, (list, tuple, set, frozenset)):
            values = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value  # stable order
            items = [_nested_json(v) if isinstance(v, (Mapping, list, tuple)) else _scalar(v)
                     for v in values if v is not None]
            if not items:
                return
            kinds = {type(v) for v in items}
            if len(kinds) == 1 and not any(isinstance(v, Mapping) for v in values):
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
