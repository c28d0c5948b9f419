"""Safe image loading: local files, bytes, data: URIs and (opt-in) http(s) URLs.

Why a module of its own: every backend, the store and the rerankers must agree on what an image *is*
(RGB, EXIF-rotated, transparency flattened on white) and on what is refused (decompression bombs, files
that are not images, remote URLs unless asked for, private network addresses, ``file://``). Centralising
it means a hostile input is refused the same way everywhere, with an error that names the input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import ipaddress
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageLoadError, RemoteImageError, describe

#: Formats we decode. Anything else (PDF, SVG, PSD, ...) is refused with a clear error.
SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF"})


@dataclass(frozen=True)
class ImagePolicy:
    """What an image source may be and how big it may get.

    ``allow_remote`` turns on http(s) fetching (off by default: a RAG index should not make network
    calls because a document says so). ``allow_private_addresses`` additionally allows loopback, private
    and link-local hosts (off even when remote is on, to stop server-side request forgery).
    ``root``, when set, confines local paths to that directory (URIs stored in a collection cannot
    escape it through ``..`` or symlinks).
    """

    allow_remote: bool = False
    allow_private_addresses: bool = False
    timeout: float = 10.0
    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 64_000_000
    root: Path | None = None
    allowed_content_types: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff", "image/x-ms-bmp"}
        )
    )

    def with_(self, **changes: object) -> "ImagePolicy":
        return replace(self, **changes)  # type: ignore[arg-type]


DEFAULT_POLICY = ImagePolicy()


@dataclass
class LoadedImage:
    """A decoded image plus the SHA-256 of the bytes it came from (the content hash used for ids)."""

    image: Image.Image
    digest: str


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def read_source_bytes(source: str | os.PathLike[str] | bytes, policy: ImagePolicy = DEFAULT_POLICY) -> bytes:
    """Return the raw bytes of an image source after applying ``policy``; raise ImageLoadError otherwise."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > policy.max_bytes:
            raise ImageLoadError(f"image {describe(source)} is larger than the {policy.max_bytes}-byte cap")
        return data
    if isinstance(source, os.PathLike):
        return _read_file(Path(source), policy)
    if not isinstance(source, str):
        raise ImageLoadError(f"cannot read an image from {describe(source)}: expected a path, URL or bytes")
    text = source.strip()
    if not text:
        raise ImageLoadError("empty image location")
    lowered = text.lower()
    if lowered.startswith("data:"):
        return _read_data_uri(text, policy)
    if is_url(lowered):
        return _fetch_url(text, policy)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ImageLoadError(
            f"image {describe(source)}: the {scheme}:// scheme is not supported; "
            "give a local path, an http(s) URL (with allow_remote=True) or bytes"
        )
    return _read_file(Path(text).expanduser(), policy)


def load_image(source: object, policy: ImagePolicy = DEFAULT_POLICY) -> LoadedImage:
    """Decode ``source`` (path, URL, bytes, file-like or PIL image) into an RGB image and its digest."""
    if isinstance(source, Image.Image):
        img = source
        _check_pixels(img, source, policy)
        digest = hashlib.sha256(
            f"{img.mode}:{img.size}".encode() + img.tobytes()
        ).hexdigest()
        return LoadedImage(_to_rgb(img), digest)
    if hasattr(source, "read") and not isinstance(source, (str, bytes, os.PathLike)):
        try:
            data = source.read()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - any reader failure is the input's fault
            raise ImageLoadError(f"could not read image from {describe(source)}: {exc}") from exc
        if not isinstance(data, (bytes, bytearray)):
            raise ImageLoadError(f"file-like image {describe(source)} did not return bytes")
        return decode_image(bytes(data), name=describe(source), policy=policy)
    data = read_source_bytes(source, policy)  # type: ignore[arg-type]
    return decode_image(data, name=describe(source), policy=policy)


def decode_image(data: bytes, *, name: str, policy: ImagePolicy = DEFAULT_POLICY) -> LoadedImage:
    if not data:
        raise ImageLoadError(f"image {name} is empty (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = (img.format or "").upper()
            if fmt not in SUPPORTED_FORMATS:
                raise ImageLoadError(
                    f"image {name} has unsupported format {fmt or 'unknown'}; "
                    f"supported: {', '.join(sorted(SUPPORTED_FORMATS))}"
                )
            _check_pixels(img, name, policy)
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP/TIFF: the first frame stands for the image
            img.load()
            img = ImageOps.exif_transpose(img)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"image {name} refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"image {name} is not a readable image (corrupt or not an image file)") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageLoadError(f"image {name} could not be decoded (truncated or corrupt): {exc}") from exc
    return LoadedImage(_to_rgb(img), digest)


def _check_pixels(img: Image.Image, name: object, policy: ImagePolicy) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageLoadError(f"image {describe(name) if not isinstance(name, str) else name} has no pixels")
    if w * h > policy.max_pixels:
        raise ImageLoadError(
            f"image {describe(name) if not isinstance(name, str) else name} refused as a decompression bomb: "
            f"{w}x{h} = {w * h} pixels is over the limit of {policy.max_pixels} (ImagePolicy.max_pixels)"
        )


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparency composited on white, so clip-art and emoji look as they do on a page."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v * (1 / 256)).convert("L")
    return img.convert("RGB")


def _read_file(path: Path, policy: ImagePolicy) -> bytes:
    name = describe(str(path))
    try:
        resolved = path.resolve(strict=True)
    except RuntimeError as exc:  # symlink loop on older Pythons
        raise ImageLoadError(f"image {name}: symlink loop") from exc
    except FileNotFoundError as exc:
        raise ImageLoadError(f"image {name} does not exist") from exc
    except OSError as exc:
        if "loop" in str(exc).lower() or getattr(exc, "errno", None) == 40:
            raise ImageLoadError(f"image {name}: symlink loop") from exc
        raise ImageLoadError(f"image {name} cannot be opened: {exc}") from exc
    if policy.root is not None:
        root = Path(policy.root).resolve()
        if resolved != root and root not in resolved.parents:
            raise ImageLoadError(f"image {name} is outside the allowed root directory {str(root)!r}")
    if resolved.is_dir():
        raise ImageLoadError(f"image {name} is a directory, not an image file")
    if not resolved.is_file():
        raise ImageLoadError(f"image {name} is not a regular file")
    size = resolved.stat().st_size
    if size > policy.max_bytes:
        raise ImageLoadError(f"image {name} is {size} bytes, over the {policy.max_bytes}-byte cap")
    try:
        return resolved.read_bytes()
    except OSError as exc:
        raise ImageLoadError(f"image {name} cannot be read: {exc}") from exc


def _read_data_uri(uri: str, policy: ImagePolicy) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep or ";base64" not in header.lower():
        raise ImageLoadError("data: image URIs must be base64 encoded (data:image/png;base64,...)")
    mime = header[5:].split(";", 1)[0].lower()
    if mime and mime not in policy.allowed_content_types:
        raise ImageLoadError(f"data: URI has content type {mime!r}, not an allowed image type")
    if len(payload) * 3 // 4 > policy.max_bytes:
        raise ImageLoadError(f"data: URI is over the {policy.max_bytes}-byte cap")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageLoadError(f"data: URI is not valid base64: {exc}") from exc


def check_host_allowed(host: str, port: int, policy: ImagePolicy, *, url: str) -> None:
    """Refuse hosts that resolve to loopback/private/link-local/reserved addresses (unless allowed)."""
    if policy.allow_private_addresses:
        return
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise RemoteImageError(f"image URL {describe(url)}: cannot resolve host {host!r}: {exc}") from exc
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if (
            addr.is_loopback
            or addr.is_private
            or addr.is_link_local
            or addr.is_reserved
            or addr.is_multicast
            or addr.is_unspecified
        ):
            raise RemoteImageError(
                f"image URL {describe(url)} points at a private/loopback address ({addr}); "
                "refused unless ImagePolicy(allow_private_addresses=True)"
            )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_OPENER = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))


def _fetch_url(url: str, policy: ImagePolicy, redirects_left: int = 3) -> bytes:
    if not policy.allow_remote:
        raise RemoteImageError(
            f"image URL {describe(url)} refused: remote images are off; pass allow_remote=True to fetch them"
        )
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RemoteImageError(f"image URL {describe(url)}: only http(s) URLs with a host are allowed")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    check_host_allowed(parsed.hostname, port, policy, url=url)
    request = urllib.request.Request(url, headers={"User-Agent": "mmembed", "Accept": "image/*"})
    try:
        with _OPENER.open(request, timeout=policy.timeout) as response:
            ctype = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            if ctype not in policy.allowed_content_types:
                raise RemoteImageError(
                    f"image URL {describe(url)} answered with content type {ctype or 'none'!r}, not an image type"
                )
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > policy.max_bytes:
                raise RemoteImageError(f"image URL {describe(url)} is {length} bytes, over the cap")
            data = response.read(policy.max_bytes + 1)
    except urllib.error.HTTPError as exc:
        if exc.code in (301, 302, 303, 307, 308) and exc.headers.get("Location"):
            if redirects_left <= 0:
                raise RemoteImageError(f"image URL {describe(url)}: too many redirects") from exc
            target = urllib.parse.urljoin(url, exc.headers["Location"])
            return _fetch_url(target, policy, redirects_left - 1)
        raise RemoteImageError(f"image URL {describe(url)} failed with HTTP {exc.code}") from exc
    except RemoteImageError:
        raise
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise RemoteImageError(f"image URL {describe(url)} could not be fetched: {exc}") from exc
    if len(data) > policy.max_bytes:
        raise RemoteImageError(f"image URL {describe(url)} is over the {policy.max_bytes}-byte cap")
    return data
