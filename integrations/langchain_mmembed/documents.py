"""Conversions between LangChain types and mmembed inputs (no retrieval logic lives here).

A LangChain ``Document`` has only ``page_content``, ``metadata`` and ``id``. mmembed carries a document's
images as locations in **one metadata key, ``metadata["image"]``**: a path/URI string for one image or a list
of them for several. So ``Document(page_content="a red fire truck", metadata={"image": "stamps/truck.png"})``
is the interleaved document *image, then text* (the order MM-Embed was trained with). Images are never put
into metadata as base64.

Documents written by ``langchain_chroma.Chroma.add_images`` hold the base64 of the image as ``page_content``
and no image location; :func:`document_to_input` recognises that (the decoded bytes start with a known image
signature) and treats the document as that image, so those documents can be reranked too.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage

from mmembed.errors import InputError, describe

#: The metadata key that names a document's image(s): a path/URI string or a list of them.
IMAGE_KEY = "image"

# Signatures of the image formats mmembed decodes (mmembed.images.SUPPORTED_FORMATS).
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
_MIN_B64_IMAGE_CHARS = 64


def document_images(document: Document) -> list[str]:
    """The image locations a Document names in ``metadata["image"]`` (empty when it names none)."""
    value = (document.metadata or {}).get(IMAGE_KEY)
    if value is None:
        return []
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for v in values:
        if isinstance(v, os.PathLike):
            v = os.fspath(v)
        if not isinstance(v, str) or not v.strip():
            raise InputError(
                f"document {_name(document)}: metadata[{IMAGE_KEY!r}] must be an image path/URI or a list of them, "
                f"got {describe(value)}"
            )
        out.append(v)
    return out


def base64_image(text: str) -> bytes | None:
    """The image bytes if ``text`` is the base64 of an image (what ``Chroma.add_images`` stores), else None."""
    if len(text) < _MIN_B64_IMAGE_CHARS or len(text) % 4 or any(c.isspace() for c in text[:_MIN_B64_IMAGE_CHARS]):
        return None
    try:
        head = base64.b64decode(text[:_MIN_B64_IMAGE_CHARS], validate=True)
    except (binascii.Error, ValueError):
        return None
    if not (head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def document_to_input(document: Document) -> Any:
    """The mmembed input for a Document: its images (``metadata["image"]``) then its text.

    Returns a value for :func:`mmembed.coerce` (not yet coerced, so the caller's error policy applies to it).
    """
    images = document_images(document)
    text = document.page_content if isinstance(document.page_content, str) else str(document.page_content)
    if images:
        return {"images": images, "text": text}
    data = base64_image(text)
    if data is not None:
        return {"image": data}
    return text


def query_to_input(query: Any) -> Any:
    """A retriever/reranker query as an mmembed input.

    A ``str`` is text. A dict (``{"image": "cat.png", "text": "in the snow"}``), a list of parts, a PIL image,
    a ``pathlib.Path`` or an :class:`mmembed.Interleaved` are passed on as they are. A chat message or a list
    of LangChain content blocks (``{"type": "text", ...}``, ``{"type": "image", "url"|"base64": ...}``,
    ``{"type": "image_url", ...}``) becomes the interleaved query in the same order.
    """
    if isinstance(query, BaseMessage):
        query = query.content
    if isinstance(query, (list, tuple)):
        return [_content_block(p) for p in query]
    if isinstance(query, dict) and query.get("type") is not None:
        return [_content_block(query)]
    return query


def _content_block(block: Any) -> Any:
    if not isinstance(block, dict) or block.get("type") != "image":
        return block
    if block.get("base64") is not None:  # LangChain v1 standard block
        return {"type": "image", "image": _b64decode(block["base64"])}
    if block.get("source_type") == "base64" and block.get("data") is not None:  # v0 block
        return {"type": "image", "image": _b64decode(block["data"])}
    return block


def _b64decode(data: Any) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InputError(f"image content block is not valid base64: {exc}") from exc


def hit_to_document(hit: Any) -> Document:
    """An mmembed ``Hit`` as a Document: text as ``page_content``, ``id``, and metadata with the stored user
    metadata plus ``image`` (one location, or a list for several), ``score`` (cosine similarity),
    ``modality`` and, after reranking, ``relevance_score``."""
    metadata = dict(hit.metadata or {})
    if hit.uris:
        metadata[IMAGE_KEY] = hit.uris[0] if len(hit.uris) == 1 else list(hit.uris)
    metadata["score"] = float(hit.score)
    if hit.modality is not None:
        metadata["modality"] = hit.modality
    if hit.rerank_score is not None:
        metadata["relevance_score"] = float(hit.rerank_score)
    return Document(page_content=hit.document or "", metadata=metadata, id=hit.id)


def store_items(documents: Sequence[Document]) -> tuple[list[Any], list[str | None], list[dict[str, Any] | None]]:
    """Documents as ``(items, ids, metadatas)`` for :meth:`mmembed.Store.add` (images leave metadata: the store
    records them as the record's URIs, and retrieval puts them back under ``metadata["image"]``)."""
    items, ids, metas = [], [], []
    for doc in documents:
        items.append(document_to_input(doc))
        ids.append(doc.id)
        meta = {k: v for k, v in (doc.metadata or {}).items() if k != IMAGE_KEY}
        metas.append(meta or None)
    return items, ids, metas


def _name(document: Document) -> str:
    return repr(document.id) if document.id else describe(document.page_content, 40)


__all__ = [
    "IMAGE_KEY",
    "base64_image",
    "document_images",
    "document_to_input",
    "hit_to_document",
    "query_to_input",
    "store_items",
]
