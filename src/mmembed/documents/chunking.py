"""Chunking rules: split a document's reading-order blocks into chunks an encoder can hold.

One rule for every format (HTML, Markdown, PDF ``block`` granularity):

* a heading starts a new section; each chunk records the heading path of its section;
* inside a section, text is packed paragraph by paragraph into chunks of at most ``max_tokens`` tokens
  (the encoder's text window); a paragraph longer than the budget is cut at sentence ends, then at words;
* an image stays in the chunk where it appears in reading order, followed by its alt text / caption; a chunk
  holds at most ``max_images`` images (the next image starts a new chunk).

Tokens are counted by ``count_tokens`` when given (the encoder's tokenizer), otherwise estimated as
``ceil(1.3 * words)``, which over-counts English subword tokens slightly, so chunks stay inside the window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: Default text budget per chunk (tokens). The default model's text tower reads 512 tokens; 256 leaves
#: room for the image caption and keeps chunks focused, as most RAG splitters do.
DEFAULT_MAX_TOKENS = 256
DEFAULT_MAX_IMAGES = 4

TokenCounter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """A conservative subword-token estimate: 1.3 per whitespace-separated word."""
    words = len(text.split())
    return math.ceil(words * 1.3)


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Text:
    text: str


@dataclass
class Figure:
    """An image in reading order: ``image`` is a path/URL for :func:`mmembed.coerce`, ``caption`` its alt text
    and/or figure caption, ``digest`` the SHA-256 of its bytes (for ids)."""

    image: str
    caption: str = ""
    digest: str = ""


Block = Heading | Text | Figure


@dataclass
class Section:
    heading: str
    parts: list[Any] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    tokens: int = 0
    images: int = 0


def _split_long(text: str, budget: int, count: TokenCounter) -> Iterator[str]:
    """Cut a paragraph over budget at sentence ends, then at words."""
    sentences = re.split(r"(?<=[.!?。])\s+", text.strip())
    piece: list[str] = []
    for sentence in sentences:
        if count(sentence) > budget:
            if piece:
                yield " ".join(piece)
                piece = []
            words = sentence.split()
            cur: list[str] = []
            for w in words:
                if cur and count(" ".join([*cur, w])) > budget:
                    yield " ".join(cur)
                    cur = []
                cur.append(w)
            if cur:
                yield " ".join(cur)
            continue
        if piece and count(" ".join([*piece, sentence])) > budget:
            yield " ".join(piece)
            piece = []
        piece.append(sentence)
    if piece:
        yield " ".join(piece)


def chunk_blocks(blocks: Iterable[Block], *, max_tokens: int = DEFAULT_MAX_TOKENS,
                 max_images: int = DEFAULT_MAX_IMAGES, count_tokens: TokenCounter | None = None) -> list[Section]:
    """Group reading-order blocks into chunks (see the module docstring). Empty chunks are dropped."""
    if max_tokens < 8:
        raise ValueError(f"max_tokens must be >= 8, got {max_tokens}")
    count = count_tokens or estimate_tokens
    path: list[Heading] = []
    out: list[Section] = []
    cur = Section(heading="")

    def flush() -> None:
        nonlocal cur
        if cur.parts:
            out.append(cur)
        cur = Section(heading=" > ".join(h.text for h in path))

    for block in blocks:
        if isinstance(block, Heading):
            flush()
            while path and path[-1].level >= block.level:
                path.pop()
            path.append(block)
            cur = Section(heading=" > ".join(h.text for h in path))
            # the heading's words belong to its section's first chunk
            cur.parts.append(block.text)
            cur.tokens = count(block.text)
        elif isinstance(block, Text):
            text = " ".join(block.text.split())
            if not text:
                continue
            n = count(text)
            if n > max_tokens:
                for piece in _split_long(text, max_tokens, count):
                    m = count(piece)
                    if cur.tokens + m > max_tokens and cur.parts:
                        flush()
                    cur.parts.append(piece)
                    cur.tokens += m
                continue
            if cur.tokens + n > max_tokens and cur.parts:
                flush()
            cur.parts.append(text)
            cur.tokens += n
        else:
            caption = " ".join(block.caption.split())
            n = count(caption) if caption else 0
            if cur.parts and (cur.images >= max_images or cur.tokens + n > max_tokens):
                flush()
            cur.parts.append({"type": "image", "image": block.image})
            cur.digests.append(block.digest or block.image)
            cur.images += 1
            if caption:
                for piece in _split_long(caption, max_tokens, count) if n > max_tokens else [caption]:
                    cur.parts.append(piece)
                    cur.tokens += count(piece)
    flush()
    return out


def merge_text_parts(parts: list[Any]) -> list[Any]:
    """Join consecutive text parts with newlines (one text part between images)."""
    out: list[Any] = []
    for p in parts:
        if isinstance(p, str) and out and isinstance(out[-1], str):
            out[-1] = out[-1] + "\n" + p
        else:
            out.append(p)
    return out
