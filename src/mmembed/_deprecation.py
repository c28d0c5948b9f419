"""Old keyword names that keep working for a while, with a DeprecationWarning (used by the adapters)."""

from __future__ import annotations

import warnings
from collections.abc import MutableMapping
from typing import Any

from .errors import InputError

_UNSET: Any = object()


def renamed(kwargs: MutableMapping[str, Any], old: str, new: str, value: Any, *, where: str,
            stacklevel: int = 4) -> Any:
    """The value of the renamed argument ``new``, taking the deprecated ``old`` out of ``kwargs``.

    ``old`` alone: a DeprecationWarning naming ``new``, and its value is used. Both with the same value (a
    LlamaIndex ``to_dict``/``from_dict`` round trip carries both): no warning. Both with different values:
    an InputError, since one of them would be silently ignored.
    """
    old_value = kwargs.pop(old, _UNSET)
    if old_value is _UNSET:
        return value
    if value is None:
        warnings.warn(f"{where}({old}=...) is deprecated: use {new}=...", DeprecationWarning, stacklevel=stacklevel)
        return old_value
    if value != old_value:
        raise InputError(f"{where}: got {new}={value!r} and its deprecated name {old}={old_value!r}; give {new} only")
    return value


__all__ = ["renamed"]
