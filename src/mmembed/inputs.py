"""One typed model for every input and one function that coerces user values into it.

mmembed accepts text, images and interleaved image-text items everywhere (encoders, store, rerankers,
LangChain and LlamaIndex adapters). They all call :func:`coerce`, so "what counts as an image" has a single
answer:

* ``str`` -> text. A string is never guessed to be a file path: wrap it as ``{"image": "cat.png"}``,
  ``pathlib.Path("cat.png")`` or :func:`image` to mean an image.
* ``PIL.Image.Image``, ``pathlib.Path``, ``bytes`` and binary file objects -> an image.
* ``{"text": ..., "image": ...}`` (``"images"`` for several) -> interleaved, images first, then the text
  (the order MM-Embed was trained with).
* a list/tuple of parts -> interleaved in the order given; a part is a ``str`` (text), an image value, or
  ``{"type": "text", "text": ...}`` / ``{"type": "image", "image": ...}`` /
  ``{"type": "image_url", "image_url": {"url": ...}}`` (chat-message content blocks).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from .errors import ImageLoadError, InputError, describe
from .images import DEFAULT_POLICY, ImagePolicy, LoadedImage, load_image

Modality = Literal["text", "image", "image+text"]

#: Longest text we accept in one part (characters). Models truncate to their own limit; this only stops
#: accidental multi-megabyte blobs from being tokenised.
MAX_TEXT_CHARS = 2_000_000


class TextPart(BaseModel):
    """A run of text inside an interleaved item."""

    model_config = ConfigDict(frozen=True)
    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """An image inside an interleaved item: a location (path or URL), raw bytes, or an in-memory image.

    Decoding is lazy: :meth:`load` reads and decodes once and caches the result on the part.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    type: Literal["image"] = "image"
    uri: str | None = Field(default=None, description="local path or http(s)/data URL of the image")
    data: bytes | None = Field(default=None, repr=False, exclude=True)
    pil: Any = Field(default=None, repr=False, exclude=True)
    _loaded: LoadedImage | None = PrivateAttr(default=None)

    def describe(self) -> str:
        if self.uri is not None:
            return describe(self.uri)
        if self.data is not None:
            return describe(self.data)
        return describe(self.pil)

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    def load(self, policy: ImagePolicy = DEFAULT_POLICY) -> LoadedImage:
        if self._loaded is None:
            if self.pil is not None:
                source: object = self.pil
            elif self.data is not None:
                source = self.data
            else:
                source = self.uri
            self._loaded = load_image(source, policy)
        return self._loaded

    @property
    def image(self) -> Image.Image:
        """The decoded RGB image (loads with the default policy if not loaded yet)."""
        return self.load().image

    def unload(self) -> None:
        self._loaded = None


Part = Annotated[Union[TextPart, ImagePart], Field(discriminator="type")]


class Interleaved(BaseModel):
    """An ordered list of text and image parts: a query, a document or a reranking candidate."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    parts: list[Part]

    # ---- views -------------------------------------------------------------------------------------
    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.parts if isinstance(p, TextPart)]

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.parts if isinstance(p, ImagePart)]

    @property
    def text(self) -> str:
        """All text parts joined by newlines (what Chroma stores as the document)."""
        return "\n".join(self.texts)

    @property
    def image_uris(self) -> list[str]:
        return [p.uri for p in self.images if p.uri is not None]

    @property
    def modality(self) -> Modality:
        has_text = any(isinstance(p, TextPart) for p in self.parts)
        has_image = any(isinstance(p, ImagePart) for p in self.parts)
        if has_text and has_image:
            return "image+text"
        return "image" if has_image else "text"

    # ---- loading and hashing -----------------------------------------------------------------------
    def load_images(self, policy: ImagePolicy = DEFAULT_POLICY) -> "Interleaved":
        """Decode every image now (raises ImageLoadError naming the image); returns self."""
        for part in self.images:
            part.load(policy)
        return self

    def content_hash(self, policy: ImagePolicy = DEFAULT_POLICY) -> str:
        """A stable hash of the content: text as given, images by the SHA-256 of their bytes.

        Used as the default record id, so indexing the same content twice (or from two workers) writes
        one record.
        """
        h = hashlib.sha256()
        for part in self.parts:
            if isinstance(part, TextPart):
                h.update(b"T" + len(part.text.encode()).to_bytes(8, "big") + part.text.encode())
            else:
                h.update(b"I" + part.load(policy).digest.encode())
        return h.hexdigest()

    def __repr__(self) -> str:  # short and safe for logs
        inner = ", ".join(
            repr(p.text[:40]) if isinstance(p, TextPart) else f"image({p.describe()})" for p in self.parts
        )
        return f"Interleaved([{inner}])"


InputLike = Union[str, Image.Image, Path, bytes, dict, list, tuple, Interleaved, TextPart, ImagePart]


def image(source: str | os.PathLike[str] | bytes | Image.Image) -> ImagePart:
    """Mark ``source`` (a path or URL string, Path, bytes or PIL image) as an image part."""
    return _image_part(source, where="image()")


def coerce(value: object, *, where: str = "input") -> Interleaved:
    """Turn any supported input into an :class:`Interleaved`; raise InputError naming ``where`` if not."""
    if isinstance(value, Interleaved):
        if not value.parts:
            raise InputError(f"{where} is empty: it has no text and no image")
        return value
    if isinstance(value, (list, tuple)):
        parts = [_part(v, where=f"{where} part {i}") for i, v in enumerate(value)]
    elif isinstance(value, dict) and "type" not in value:
        parts = _parts_from_dict(value, where=where)
    else:
        parts = [_part(value, where=where)]
    parts = [p for p in parts if not (isinstance(p, TextPart) and not p.text.strip())] if len(parts) > 1 else parts
    if not parts:
        raise InputError(f"{where} is empty: it has no text and no image")
    if len(parts) == 1 and isinstance(parts[0], TextPart) and not parts[0].text.strip():
        raise InputError(f"{where} is empty or whitespace-only text: {describe(parts[0].text)}")
    return Interleaved(parts=parts)


def coerce_many(values: Iterable[object] | object, *, what: str = "input") -> list[Interleaved]:
    """Coerce a batch. A bare str/dict/image is treated as a batch of one."""
    if isinstance(values, (str, bytes, dict, Image.Image, Path, Interleaved, ImagePart, TextPart)):
        values = [values]
    if not isinstance(values, Iterable):
        raise InputError(f"expected a list of {what}s, got {describe(values)}")
    return [coerce(v, where=f"{what} #{i}") for i, v in enumerate(values)]


def _parts_from_dict(value: dict, *, where: str) -> list[TextPart | ImagePart]:
    allowed = {"text", "image", "images"}
    unknown = set(value) - allowed
    if unknown:
        raise InputError(
            f"{where} has unknown keys {sorted(unknown)}; use 'text', 'image' or 'images' "
            "(or a list of parts for a custom order)"
        )
    parts: list[TextPart | ImagePart] = []
    imgs: list[object] = []
    if value.get("image") is not None:
        imgs.append(value["image"])
    if value.get("images") is not None:
        many = value["images"]
        if not isinstance(many, (list, tuple)):
            raise InputError(f"{where}: 'images' must be a list, got {describe(many)}")
        imgs.extend(many)
    for i, img in enumerate(imgs):
        if isinstance(img, (list, tuple)):
            imgs_where = f"{where} image {i}"
            raise InputError(f"{imgs_where}: nested lists are not images; use 'images': [...]")
        parts.append(_image_part(img, where=f"{where} image {i}"))
    text = value.get("text")
    if text is not None:
        parts.append(_text_part(text, where=f"{where} text"))
    return parts


def _part(value: object, *, where: str) -> TextPart | ImagePart:
    if isinstance(value, TextPart):
        return _text_part(value.text, where=where) if not _is_unicode(value.text) else value
    if isinstance(value, ImagePart):
        return value
    if isinstance(value, str):
        return _text_part(value, where=where)
    if isinstance(value, dict):
        kind = value.get("type")
        if kind == "text":
            return _text_part(value.get("text"), where=where)
        if kind == "image":
            src = value.get("image", value.get("uri", value.get("url")))
            return _image_part(src, where=where)
        if kind == "image_url":
            inner = value.get("image_url")
            url = inner.get("url") if isinstance(inner, dict) else inner
            return _image_part(url, where=where)
        if kind is None and set(value) <= {"text", "image"} and len(value) == 1:
            key = next(iter(value))
            return _text_part(value[key], where=where) if key == "text" else _image_part(value[key], where=where)
        raise InputError(f"{where}: unknown part {describe(value)}; use {{'type': 'text'|'image', ...}}")
    if isinstance(value, (list, tuple)):
        raise InputError(f"{where}: nested lists are not supported, flatten the parts")
    return _image_part(value, where=where)


def _text_part(value: object, *, where: str) -> TextPart:
    if not isinstance(value, str):
        raise InputError(f"{where}: text must be a str, got {describe(value)}")
    if len(value) > MAX_TEXT_CHARS:
        raise InputError(f"{where}: text of {len(value)} characters is over the {MAX_TEXT_CHARS} limit")
    if not _is_unicode(value):
        raise InputError(
            f"{where}: text is not valid Unicode (it holds lone surrogates, as text mis-decoded with "
            f"surrogateescape does): {describe(value)}; decode it with errors='replace' first"
        )
    return TextPart(text=value)


def _is_unicode(text: str) -> bool:
    """True when ``text`` can be encoded as UTF-8 (tokenizers, hashing and Chroma all need that)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _image_part(value: object, *, where: str) -> ImagePart:
    if isinstance(value, ImagePart):
        return value
    if isinstance(value, Image.Image):
        return ImagePart(pil=value)
    if isinstance(value, os.PathLike):
        return ImagePart(uri=os.fspath(value))
    if isinstance(value, str):
        if not value.strip():
            raise InputError(f"{where}: empty image location")
        return ImagePart(uri=value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) == 0:
            raise InputError(f"{where}: image bytes are empty (0 bytes)")
        return ImagePart(data=bytes(value))
    if isinstance(value, io.IOBase) or hasattr(value, "read"):
        try:
            data = value.read()  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001
            raise ImageLoadError(f"{where}: could not read image stream: {exc}") from exc
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise InputError(f"{where}: image stream gave no bytes")
        return ImagePart(data=bytes(data))
    raise InputError(
        f"{where}: cannot use {describe(value)} ({type(value).__name__}) as text or image; "
        "give a str (text), a PIL image, a Path, bytes, a {'text', 'image'} dict or a list of parts"
    )


def load_all(
    items: Sequence[Interleaved], policy: ImagePolicy = DEFAULT_POLICY, *, what: str = "input", offset: int = 0
) -> None:
    """Decode every image of a batch, raising an ImageLoadError that names the item (``what #i``)."""
    for i, item in enumerate(items, start=offset):
        for part in item.images:
            try:
                part.load(policy)
            except ImageLoadError as exc:
                raise type(exc)(f"{what} #{i}: {exc}") from exc
