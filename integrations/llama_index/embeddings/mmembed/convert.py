"""LlamaIndex values -> mmembed inputs, in one place for the embedding, retriever and reranker.

LlamaIndex hands images around as a path string, a ``BytesIO`` (``ImageNode.resolve_image()``), or on an
``ImageNode`` as base64 / ``image_path`` / ``image_url``; queries arrive as a ``QueryBundle`` with an
optional ``image_path``. These helpers turn each into what :func:`mmembed.coerce` accepts, so what counts
as an image and which images are refused (missing files, corrupt bytes, remote URLs unless allowed) is
decided by the engine, the same way as everywhere else in mmembed.

Why not ``ImageNode.resolve_image()``: for ``image_url`` it downloads with ``requests`` right away, with no
size cap and no private-address check. Passing the URL to mmembed instead applies its image policy
(remote fetching off unless asked for).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from typing import Any

from llama_index.core.schema import BaseNode, ImageDocument, ImageNode, MetadataMode, QueryBundle

from mmembed import ImagePart, InputError, Interleaved, coerce, image
from mmembed.errors import describe


def image_input(value: Any, *, where: str = "image") -> ImagePart:
    """An image given the LlamaIndex way (``ImageType`` = path ``str`` | ``BytesIO``; also PIL/Path/bytes).

    A ``BytesIO`` is read whole whatever its position, so a buffer someone already read still works.
    """
    if isinstance(value, io.BytesIO):
        data = value.getvalue()
        if not data:
            raise InputError(f"{where}: the BytesIO holds no bytes")
        return image(data)
    if isinstance(value, str) and not value.strip():
        raise InputError(f"{where}: empty image path")
    if isinstance(value, (str, bytes, bytearray, memoryview, os.PathLike)) or hasattr(value, "read") or hasattr(
        value, "getpixel"
    ):
        return coerce([{"type": "image", "image": value}], where=where).images[0]
    raise InputError(
        f"{where}: cannot use {describe(value)} ({type(value).__name__}) as an image; give a file path, a "
        "BytesIO, bytes or a PIL image"
    )


def query_input(bundle: QueryBundle | str, *, use_embedding_strs: bool = True, where: str = "query") -> Interleaved:
    """A query bundle as one mmembed query: its image (``image_path``) then its text, composed when both.

    ``use_embedding_strs`` takes the text from ``embedding_strs`` (``custom_embedding_strs`` when a query
    transform set them, joined by newlines), as LlamaIndex retrievers do; rerankers use ``query_str``.
    """
    if isinstance(bundle, str):
        bundle = QueryBundle(query_str=bundle)
    if not isinstance(bundle, QueryBundle):
        raise InputError(f"{where}: expected a QueryBundle or a str, got {describe(bundle)}")
    strs = bundle.embedding_strs if use_embedding_strs else [bundle.query_str or ""]
    text = "\n".join(s for s in strs if isinstance(s, str) and s.strip())
    parts: list[Any] = []
    if bundle.image_path is not None:
        parts.append(image_input(bundle.image_path, where=f"{where} image_path"))
    if text:
        parts.append(text)
    if not parts:
        raise InputError(f"{where} has no text and no image: set query_str and/or image_path")
    return coerce(parts, where=where)


def node_input(node: BaseNode, *, metadata_mode: MetadataMode = MetadataMode.EMBED,
               where: str | None = None) -> Interleaved:
    """A node as an mmembed item: an ``ImageNode``'s (or ``ImageDocument``'s) image (base64 ``image``, else
    ``image_path``, else ``image_url``) followed by its text; any other node as its text
    (``get_content(metadata_mode)``)."""
    where = where or f"node {node.node_id!r}"
    parts: list[Any] = []
    if isinstance(node, (ImageNode, ImageDocument)):  # ImageDocument is no longer an ImageNode subclass
        if node.image:
            parts.append(_b64_image(node.image, where=f"{where} image"))
        elif node.image_path:
            parts.append(image_input(node.image_path, where=f"{where} image_path"))
        elif node.image_url:
            parts.append(image_input(node.image_url, where=f"{where} image_url"))
        # an image-only node's content would be just its metadata (file paths...): keep text real text
        text = node.get_content(metadata_mode=metadata_mode) if (node.text or "").strip() else ""
    else:
        text = node.get_content(metadata_mode=metadata_mode)
    if text and text.strip():
        parts.append(text)
    if not parts:
        raise InputError(f"{where} has no text and no image")
    return coerce(parts, where=where)


def _b64_image(value: str, *, where: str) -> ImagePart:
    if value.startswith("data:"):
        return image(value)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{where}: ImageNode.image is not valid base64 ({exc})") from exc
    if not data:
        raise InputError(f"{where}: ImageNode.image decodes to no bytes")
    return image(data)


__all__ = ["image_input", "node_input", "query_input"]
