"""Exceptions raised by mmembed.

Every error that comes from a user's input names that input (its position in the batch and a short,
safe description of it), so a failure in a folder of 100k images points at the file to look at.
"""

from __future__ import annotations


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


class ModelLoadError(MMEmbedError):
    """A model directory or registry name could not be turned into a model."""


def describe(value: object, limit: int = 80) -> str:
    """A short, printable description of an input for error messages (never the raw bytes)."""
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    try:
        from PIL import Image

        if isinstance(value, Image.Image):
            return f"<PIL.Image {value.mode} {value.size[0]}x{value.size[1]}>"
    except ImportError:  # pragma: no cover
        pass
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
