"""What a file becomes: :class:`DocumentChunk` s with provenance, plus what was skipped and why.

One id and provenance scheme for every format, so the store, the CLI, the search page and the framework
loaders read the same keys:

* ``source``: the file's path relative to the indexed root (POSIX separators); the key ``--replace-changed``
  matches on, so an edited file replaces its old chunks;
* ``format``: ``pdf``, ``html``, ``markdown``, ``svg`` or ``image``;
* ``page`` (PDF, 1-based) or ``heading`` (HTML/Markdown: the heading path, ``"Intro > Install"``);
* ``chunk`` (0-based index of the chunk in its document) and ``chunks`` (how many the document has);
* ``doc_sha256``: the SHA-256 of the file's bytes (a re-run skips a document whose stored chunks carry the
  same digest and are all present);
* ``images``: the locations of the chunk's images, also stored as the record's URIs.

Chunk ids are content hashes of (source, position, text, image bytes): re-indexing an unchanged file adds
nothing, and an edited page changes only the ids of the chunks whose content changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

FORMATS = ("pdf", "html", "markdown", "svg", "image")


class DocumentError(InputError):
    """A file could not be turned into a document (encrypted, corrupt, over a cap, unsafe...).

    The message always names the file.
    """


@dataclass
class DocumentChunk:
    """One record to index: ``parts`` in reading order (text strings and ``{"type": "image", ...}`` dicts,
    ready for :func:`mmembed.coerce`), its stable ``id`` and flat ``metadata`` with the provenance keys."""

    id: str
    parts: list[Any]
    metadata: dict[str, Any]

    @property
    def text(self) -> str:
        return "\n".join(p for p in self.parts if isinstance(p, str))

    @property
    def images(self) -> list[str]:
        return [str(p["image"]) for p in self.parts if isinstance(p, dict) and p.get("type") == "image"]

    @property
    def item(self) -> Any:
        """The input for :func:`mmembed.coerce` / ``Store.add``."""
        return list(self.parts)


@dataclass
class Document:
    """A file turned into chunks. ``chunks`` is filled lazily by :func:`iter_chunks` for streaming formats
    (PDF) and eagerly for the others; ``notes`` tells the user what was adapted (an image left out, a page
    rendered at a lower DPI, OCR used...)."""

    path: str
    source: str
    format: str
    sha256: str
    pages: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class SkippedFile:
    path: str
    format: str
    reason: str


def chunk_id(source: str, locator: str, text: str, image_digests: list[str]) -> str:
    """The stable id of a chunk: SHA-256 over its source, position and content."""
    h = hashlib.sha256()
    for piece in (source, locator, text, *image_digests):
        h.update(piece.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
