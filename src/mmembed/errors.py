"""Exceptions raised by mmembed.

Every error that comes from a user's input names that input (its position in the batch and a short,
safe description of it), so a failure in a folder of 100k images points at the file to look at.
"""

from __future__ import annotations

from pathlib import PurePath


class MMEmbedError(Exception):
    """Base class for every error mmembed raises on purpose."""


class InputError(MMEmbedError, ValueError):
    """An input (text, image, interleaved item, id or metadata) cannot be used."""


class ImageLoadError(InputError):
    """An image could not be opened, decoded or fetched."""


class RemoteImageError(ImageLoadError):
    """A remote image was refused (remote loading off, bad scheme, private address, too large...)."""


class EncoderMismatchError(MMEmbedError):
    """A collection was built by another encoder (name or dimension differ)."""


class StoreConnectionError(MMEmbedError, ConnectionError):
    """The Chroma server could not be reached (not running, wrong host/port, or it went away mid-call)."""


class StoreNotFoundError(MMEmbedError, LookupError):
    """A lookup named a database or collection that does not exist (lookups never create one)."""


class DataFetchError(MMEmbedError):
    """A registry package (evaluation or training data) could not be fetched, unpacked or verified."""


class ModelLoadError(MMEmbedError):
    """A model directory or registry name could not be turned into a model."""


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut in the middle to at most ``limit`` characters, so both ends stay readable: a long path
    keeps its first directories and its file name, which is the part a user needs to find the file."""
    if len(text) <= limit:
        return text
    keep = max(limit - 3, 2)
    head = keep // 2
    return text[:head] + "..." + text[len(text) - (keep - head):]


def describe(value: object, limit: int = 80) -> str:
    """A short, printable description of an input for error messages (never the raw bytes); long ones are
    shortened in the middle (:func:`shorten`)."""
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    try:
        from PIL import Image

        if isinstance(value, Image.Image):
            return f"<PIL.Image {value.mode} {value.size[0]}x{value.size[1]}>"
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, PurePath):
        value = str(value)
    return shorten(repr(value), limit)
