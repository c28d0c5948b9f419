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
import http.client
import io
import ipaddress
import os
import socket
import threading
import time
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
    and link-local hosts (off even when remote is on, to stop server-side request forgery; the address
    checked is the one actually connected to, so DNS rebinding cannot slip past it). ``timeout`` bounds
    each network operation, ``total_timeout`` the whole fetch including redirects (a server dribbling a
    byte at a time never trips a per-operation timeout).
    ``root``, when set, confines local paths to that directory (URIs stored in a collection cannot
    escape it through ``..`` or symlinks).
    """

    allow_remote: bool = False
    allow_private_addresses: bool = False
    timeout: float = 10.0
    total_timeout: float = 30.0
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
        kind = _sniff_non_image(data)
        if kind:
            raise ImageLoadError(
                f"image {name} is not a readable image: it is {kind}; supported formats: "
                f"{', '.join(sorted(SUPPORTED_FORMATS))}"
            ) from exc
        raise ImageLoadError(f"image {name} is not a readable image (corrupt or not an image file)") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageLoadError(f"image {name} could not be decoded (truncated or corrupt): {exc}") from exc
    return LoadedImage(_to_rgb(img), digest)


def _sniff_non_image(data: bytes) -> str | None:
    """Name the common non-image files people hand over as images, so the error says what to do."""
    head = data[:2048].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "a PDF document (render its pages to PNG first)"
    if b"<svg" in head:
        return "an SVG vector image (mmembed has no SVG renderer: convert it to PNG first)"
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    return None


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


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def forbidden_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The non-public address hidden in ``ip`` (itself, or an IPv4 address embedded in IPv6), if any."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [addr]
    if isinstance(addr, ipaddress.IPv6Address):
        teredo = addr.teredo
        candidates += [a for a in (addr.ipv4_mapped, addr.sixtofour, teredo[1] if teredo else None) if a]
        if addr in _NAT64:
            candidates.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    for a in candidates:
        if (not a.is_global or a.is_private or a.is_loopback or a.is_link_local or a.is_reserved
                or a.is_multicast or a.is_unspecified or getattr(a, "is_site_local", False)):
            return a
    return None


def _refuse_private(addr: object, url: str) -> RemoteImageError:
    return RemoteImageError(
        f"image URL {describe(url)} points at a private/loopback address ({addr}); "
        "refused unless ImagePolicy(allow_private_addresses=True)"
    )


def check_host_allowed(host: str, port: int, policy: ImagePolicy, *, url: str) -> None:
    """Refuse hosts that resolve to loopback/private/link-local/reserved addresses (unless allowed).

    A fast, clear refusal before connecting; :class:`_Fetch` checks the connected address again.
    """
    if policy.allow_private_addresses:
        return
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise RemoteImageError(f"image URL {describe(url)}: cannot resolve host {host!r}: {exc}") from exc
    for info in infos:
        bad = forbidden_address(str(info[4][0]))
        if bad is not None:
            raise _refuse_private(bad, url)


class _Fetch:
    """One fetch (with its redirects): the sockets it opened, the peer check, and the total deadline.

    The deadline is enforced by a timer that shuts the sockets down, which wakes any blocked read, so no
    server can hold a worker longer than ``total_timeout`` (+ one ``timeout`` to notice).
    """

    def __init__(self, url: str, policy: ImagePolicy) -> None:
        self.url = url
        self.policy = policy
        self.sockets: list[socket.socket] = []
        self.expired = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(policy.total_timeout, self.expire)
        self._timer.daemon = True

    def __enter__(self) -> "_Fetch":
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def connected(self, sock: socket.socket, url: str) -> None:
        with self._lock:
            self.sockets.append(sock)
            if self.expired:
                sock.shutdown(socket.SHUT_RDWR)
        if not self.policy.allow_private_addresses:
            bad = forbidden_address(str(sock.getpeername()[0]))
            if bad is not None:
                sock.close()
                raise _refuse_private(bad, url)

    def too_slow(self) -> RemoteImageError:
        return RemoteImageError(
            f"image URL {describe(self.url)} took longer than {self.policy.total_timeout:g} s "
            "(ImagePolicy.total_timeout)"
        )


class _CheckedConnectMixin:
    """Checks the address a connection actually reached (closes DNS rebinding between check and connect)."""

    def __init__(self, *args: object, fetch: _Fetch, url: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._fetch, self._url = fetch, url

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._fetch.connected(self.sock, self._url)  # type: ignore[attr-defined]


class _CheckedHTTPConnection(_CheckedConnectMixin, http.client.HTTPConnection):
    pass


class _CheckedHTTPSConnection(_CheckedConnectMixin, http.client.HTTPSConnection):
    pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


def _opener(fetch: _Fetch, url: str) -> urllib.request.OpenerDirector:
    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req):  # type: ignore[no-untyped-def]
            return self.do_open(lambda *a, **kw: _CheckedHTTPConnection(*a, fetch=fetch, url=url, **kw), req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req):  # type: ignore[no-untyped-def]
            return self.do_open(lambda *a, **kw: _CheckedHTTPSConnection(*a, fetch=fetch, url=url, **kw), req,
                                context=self._context)

    return urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}), HTTP, HTTPS)


def _fetch_url(url: str, policy: ImagePolicy) -> bytes:
    if not policy.allow_remote:
        raise RemoteImageError(
            f"image URL {describe(url)} refused: remote images are off; pass allow_remote=True to fetch them"
        )
    with _Fetch(url, policy) as fetch:
        try:
            data = _fetch_following(url, policy, fetch, redirects_left=3)
        except RemoteImageError as exc:
            if fetch.expired:
                raise fetch.too_slow() from None
            if describe(url) not in str(exc):  # failed after a redirect: name the URL the user gave too
                raise RemoteImageError(f"image URL {describe(url)} was redirected, then: {exc}") from exc
            raise
        if fetch.expired:  # a read cut short by the deadline looks like a short body
            raise fetch.too_slow()
    return data


def _fetch_following(url: str, policy: ImagePolicy, fetch: _Fetch, redirects_left: int) -> bytes:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        scheme = parsed.scheme or "(none)"
        raise RemoteImageError(f"image URL {describe(url)}: the {scheme}:// scheme is not supported; only http(s)")
    if not parsed.hostname:
        raise RemoteImageError(f"image URL {describe(url)}: only http(s) URLs with a host are allowed")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as exc:
        raise RemoteImageError(f"image URL {describe(url)} has an invalid port") from exc
    check_host_allowed(parsed.hostname, port, policy, url=url)
    request = urllib.request.Request(url, headers={"User-Agent": "mmembed", "Accept": "image/*"})
    try:
        with _opener(fetch, url).open(request, timeout=policy.timeout) as response:
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
            return _fetch_following(target, policy, fetch, redirects_left - 1)
        raise RemoteImageError(f"image URL {describe(url)} failed with HTTP {exc.code}") from exc
    except RemoteImageError:
        raise
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
        if fetch.expired:
            raise fetch.too_slow() from exc
        reason = getattr(exc, "reason", exc)
        raise RemoteImageError(f"image URL {describe(url)} could not be fetched: {reason}") from exc
    if len(data) > policy.max_bytes:
        raise RemoteImageError(f"image URL {describe(url)} is over the {policy.max_bytes}-byte cap")
    return data
