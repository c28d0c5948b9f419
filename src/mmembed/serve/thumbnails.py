"""Thumbnails of stored images, only for files under the collection's recorded roots.

A record's image location is whatever was indexed (``mmembed:image_uris``); the page must not become a way to
read any file of the server. So a location is served only when it is a local file whose *resolved* path (``..``
and symlinks followed) lies under one of ``Store.roots`` (``mmembed:roots``, recorded by ``mmembed index`` and
the demo). Collections without recorded roots serve no files, and the reason is given instead of a thumbnail.
Thumbnails are small WebP (PNG where Pillow lacks WebP), kept in a bounded in-memory LRU keyed by the file's
path, size and modification time, so an edited file gets a fresh thumbnail.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, features

from ..errors import ImageLoadError, MMEmbedError
from ..images import ImagePolicy, load_image
from .uploads import render_svg

THUMB_SIZES = (128, 256, 512)
NO_ROOTS = ("this collection records no file roots (it was indexed before mmembed recorded them), so no "
            "image files are served; re-run `mmembed index` on its folder to record them")


class FileRefused(MMEmbedError):
    """A stored location that may not be served (outside the roots, remote, missing)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


def resolve_roots(roots: list[Path]) -> frozenset[Path]:
    """The recorded roots with symlinks and ``..`` resolved (once per request, not once per hit)."""
    out = set()
    for root in roots:
        try:
            out.add(root.resolve())
        except (OSError, RuntimeError):  # pragma: no cover - a root that vanished
            continue
    return frozenset(out)


def servable_path(uri: str, roots: list[Path] | frozenset[Path]) -> Path:
    """The resolved local file for ``uri`` if it lies under one of ``roots``; FileRefused otherwise."""
    if not roots:
        raise FileRefused(NO_ROOTS)
    if "://" in uri or uri.lower().startswith("data:"):
        raise FileRefused("only local files under the collection's roots are served, not URLs")
    resolved = roots if isinstance(roots, frozenset) else resolve_roots(roots)
    try:
        path = Path(uri).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise FileRefused("the stored image file no longer exists", status=404) from None
    if path in resolved or not resolved.isdisjoint(path.parents):
        if not path.is_file():
            raise FileRefused("the stored image location is not a file", status=404)
        return path
    raise FileRefused("the stored image is outside the directories recorded for this collection; refused")


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    media_type: str
    etag: str


class ThumbnailCache:
    """Make and keep thumbnails (bounded by total bytes, least recently used dropped first)."""

    def __init__(self, policy: ImagePolicy, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.policy = policy
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int, int, int], Thumbnail] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._webp = features.check("webp")

    def get(self, path: Path, size: int) -> Thumbnail:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, size)
        with self._lock:
            thumb = self._items.get(key)
            if thumb is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return thumb
        thumb = self._make(path, size, etag=f'"{abs(hash(key)):x}"')
        with self._lock:
            self.misses += 1
            if key not in self._items:
                self._items[key] = thumb
                self._size += len(thumb.data)
            while self._size > self.max_bytes and self._items:
                _, old = self._items.popitem(last=False)
                self._size -= len(old.data)
        return thumb

    def _make(self, path: Path, size: int, *, etag: str) -> Thumbnail:
        if path.suffix.lower() == ".svg":
            data = path.read_bytes()
            if len(data) > self.policy.max_bytes:
                raise ImageLoadError(f"SVG {path.name} is over the {self.policy.max_bytes}-byte cap")
            img = render_svg(data, name=path.name, side=size)
        else:
            img = load_image(path, self.policy).image
        img = img.copy()
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if self._webp:
            img.save(buf, format="WEBP", quality=85, method=4)
            return Thumbnail(buf.getvalue(), "image/webp", etag)
        img.save(buf, format="PNG", optimize=True)  # pragma: no cover - Pillow without WebP
        return Thumbnail(buf.getvalue(), "image/png", etag)  # pragma: no cover
