"""Images that arrive over HTTP: sniffed by their bytes, decoded with limits, SVG rendered to pixels.

A browser's or client's declared content type is not trusted: the bytes decide. Raster formats go through
:func:`mmembed.images.decode_image` (the same limits as everywhere in mmembed); an SVG is rendered to a PNG with
``resvg-py`` and only the pixels are kept, so an uploaded SVG (scripts, external references) is never stored
or served back as SVG. Anything else is refused with an :class:`UnsupportedUpload` the app turns into a 415.
"""

from __future__ import annotations

import base64
import binascii
import io
import re

from PIL import Image

from ..errors import ImageLoadError, InputError
from ..images import SUPPORTED_FORMATS, ImagePolicy, decode_image

#: Longest side an uploaded SVG is rendered at (pixels): enough for any encoder, small enough to bound memory.
SVG_RENDER_SIDE = 1024

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class UnsupportedUpload(InputError):
    """The uploaded bytes are not an image format mmembed reads (a PDF, a text file, an executable...)."""


def sniff(data: bytes) -> str | None:
    """The image format the bytes really are (``"PNG"``, ``"SVG"``...), or ``None`` for anything else."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<?xml", b"<svg", b"<!--", b"<!doctype svg")) and b"<svg" in head:
        return "SVG"
    return None


def _what_it_is(data: bytes) -> str:
    head = data[:1024].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "a PDF document"
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if head.startswith(b"pk\x03\x04"):
        return "a ZIP archive"
    if head.startswith(b"\x7felf") or head.startswith(b"mz"):
        return "an executable"
    try:
        data[:1024].decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "an unrecognised binary file"


# hrefs that stay inside the SVG (fragments) or carry their own data are fine; anything else would make the
# renderer open a file of this machine or a URL.
_EXTERNAL_REF = re.compile(rb"""(?:xlink:)?href\s*=\s*["'](?!\s*#|\s*data:)""", re.IGNORECASE)
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)


def render_svg(data: bytes, *, name: str, side: int = SVG_RENDER_SIDE) -> Image.Image:
    """Render SVG bytes to an RGB image on white, longest side ``side``; refuse external references/entities."""
    if _EXTERNAL_REF.search(data) or b"@import" in data.lower():
        raise UnsupportedUpload(f"SVG {name} references external files or URLs; only self-contained SVG is accepted")
    if _ENTITY.search(data):
        raise UnsupportedUpload(f"SVG {name} declares XML entities, which are refused")
    try:
        import resvg_py
    except ImportError as exc:  # pragma: no cover - resvg-py is part of the serve extra
        raise UnsupportedUpload(f"SVG {name} cannot be rendered: install resvg-py (pip install 'mmembed[serve]')") from exc
    try:
        svg = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImageLoadError(f"SVG {name} is not UTF-8 text") from exc
    try:
        # render once at the SVG's own size to learn its aspect ratio, then at the size we want
        probe = Image.open(io.BytesIO(bytes(resvg_py.svg_to_bytes(svg_string=svg, width=64))))
        w, h = probe.size
        scale = side / max(w, h, 1)
        png = bytes(resvg_py.svg_to_bytes(svg_string=svg, width=max(1, round(w * scale)),
                                          height=max(1, round(h * scale))))
        img = Image.open(io.BytesIO(png))
        img.load()
    except Exception as exc:  # resvg raises plain exceptions for malformed SVG
        raise ImageLoadError(f"SVG {name} could not be rendered: {exc}") from exc
    rgba = img.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


def read_image_upload(data: bytes, *, name: str, policy: ImagePolicy) -> Image.Image:
    """Bytes from an upload or data URI -> an RGB PIL image, or UnsupportedUpload / ImageLoadError."""
    if not data:
        raise ImageLoadError(f"upload {name} is empty (0 bytes)")
    if len(data) > policy.max_bytes:
        raise ImageLoadError(f"upload {name} is {len(data)} bytes, over the {policy.max_bytes}-byte cap")
    fmt = sniff(data)
    if fmt is None:
        raise UnsupportedUpload(
            f"upload {name} is not an image: it looks like {_what_it_is(data)}. "
            f"Send PNG, JPEG, WebP, GIF, BMP, TIFF or SVG.")
    if fmt == "SVG":
        return render_svg(data, name=name)
    loaded = decode_image(data, name=name, policy=policy)
    if fmt not in SUPPORTED_FORMATS:  # pragma: no cover - every sniffed raster format is supported
        raise UnsupportedUpload(f"upload {name} is {fmt}, which mmembed does not read")
    return loaded.image


def decode_data_uri(uri: str, *, max_bytes: int) -> bytes:
    """The bytes of a ``data:[type];base64,...`` URI. Only data URIs: a client never names a file or URL here."""
    text = uri.strip()
    if not text.lower().startswith("data:"):
        raise InputError("the image field takes an uploaded file or a data: URI (data:image/png;base64,...); "
                         "paths and URLs are not accepted")
    header, sep, payload = text.partition(",")
    if not sep or ";base64" not in header.lower():
        raise InputError("data: URIs must be base64 encoded (data:image/png;base64,...)")
    if len(payload) * 3 // 4 > max_bytes:
        raise ImageLoadError(f"the data: URI image is over the {max_bytes}-byte cap")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"the data: URI is not valid base64: {exc}") from exc


def to_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
