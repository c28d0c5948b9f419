"""Local HTML pages -> reading-order blocks (headings, text, figures with their alt text and captions).

Images are resolved by :func:`mmembed.documents.figures.resolve_figure`: local files only inside the indexed
root, ``file://`` refused, remote URLs only under the remote-image policy, SVG rendered safely. Text is
decoded from the declared charset (BOM, ``<meta charset>``), else UTF-8, else windows-1252 with a note.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from html.parser import HTMLParser

from .chunking import Block, Figure, Heading, Text

_SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg", "math", "button", "select",
                   "textarea", "iframe", "object"})
_BREAK = frozenset({"p", "div", "li", "pre", "td", "th", "tr", "table", "blockquote", "dd", "dt", "dl",
                    "section", "article", "main", "aside", "header", "footer", "nav", "ul", "ol", "br", "hr",
                    "figcaption", "caption", "form", "details", "summary", "address"})
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_VOID = frozenset({"img", "br", "hr", "meta", "link", "input", "source", "area", "base", "col", "embed",
                   "param", "track", "wbr"})

FigureResolver = Callable[[str, str], "Figure | Text | None"]


class _Parser(HTMLParser):
    def __init__(self, resolve: FigureResolver) -> None:
        super().__init__(convert_charrefs=True)
        self.resolve = resolve
        self.blocks: list[Block] = []
        self.buf: list[str] = []
        self.skip = 0
        self.heading: int | None = None
        self.heading_buf: list[str] = []
        self.title_buf: list[str] = []
        self.in_title = False
        self.figure_depth = 0
        self.figure_items: list[Figure | Text] = []
        self.caption_buf: list[str] | None = None

    # ---- helpers ----
    def _flush_text(self) -> None:
        text = " ".join("".join(self.buf).split())
        self.buf = []
        if text:
            self.blocks.append(Text(text))

    def _emit(self, block: Figure | Text) -> None:
        if self.figure_depth:
            self.figure_items.append(block)
        else:
            self._flush_text()
            self.blocks.append(block)

    # ---- parser callbacks ----
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self.blocks:
            self.in_title = True
        if tag in _SKIP:
            if tag not in _VOID:
                self.skip += 1
            return
        if self.skip:
            return
        if tag in _HEADINGS:
            self._flush_text()
            self.heading = _HEADINGS[tag]
            self.heading_buf = []
        elif tag == "figure":
            self._flush_text()
            self.figure_depth += 1
        elif tag == "figcaption" and self.figure_depth:
            self.caption_buf = []
        elif tag == "img":
            a = {k: (v or "") for k, v in attrs}
            src = a.get("src", "").strip()
            if src:
                block = self.resolve(src, a.get("alt", "").strip() or a.get("title", "").strip())
                if block is not None:
                    self._emit(block)
        elif tag in _BREAK:
            self.buf.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in _SKIP:
            if tag not in _VOID:
                self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag in _HEADINGS and self.heading is not None:
            text = " ".join("".join(self.heading_buf).split()).rstrip("¶#").strip()
            self.heading = None
            if text:
                self.blocks.append(Heading(_HEADINGS[tag], text))
        elif tag == "figcaption" and self.caption_buf is not None:
            caption = " ".join("".join(self.caption_buf).split())
            self.caption_buf = None
            figs = [b for b in self.figure_items if isinstance(b, Figure)]
            if figs and caption:
                figs[-1].caption = f"{figs[-1].caption} {caption}".strip()
            elif caption:
                self.figure_items.append(Text(caption))
        elif tag == "figure" and self.figure_depth:
            self.figure_depth -= 1
            if not self.figure_depth:
                items, self.figure_items = self.figure_items, []
                self._flush_text()
                self.blocks.extend(items)
        elif tag in _BREAK:
            self.buf.append("\n")
            if tag in ("p", "li", "pre", "blockquote", "dd", "td", "tr", "div", "table", "section"):
                self._flush_text()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title_buf.append(data)
            return
        if self.skip:
            return
        if self.heading is not None:
            self.heading_buf.append(data)
        elif self.caption_buf is not None:
            self.caption_buf.append(data)
        else:
            self.buf.append(data)

    def close(self) -> None:
        super().close()
        self._flush_text()
        if self.figure_items:
            self.blocks.extend(self.figure_items)
            self.figure_items = []

    @property
    def title(self) -> str:
        return " ".join("".join(self.title_buf).split())


def parse_html(text: str, resolve: FigureResolver) -> tuple[list[Block], str]:
    """Blocks in reading order and the page title."""
    parser = _Parser(resolve)
    parser.feed(text)
    parser.close()
    return parser.blocks, parser.title


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.IGNORECASE)


def decode_html(data: bytes) -> tuple[str, str | None]:
    """(text, note): the declared encoding, else UTF-8, else windows-1252 (with a note saying so)."""
    for bom, enc in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return data.decode(enc, errors="replace"), None
    m = _META_CHARSET.search(data[:4096])
    if m:
        declared = m.group(1).decode("ascii", "replace")
        try:
            codecs.lookup(declared)
        except LookupError:
            declared = ""
        if declared:
            try:
                return data.decode(declared), None
            except UnicodeDecodeError:
                return data.decode(declared, errors="replace"), (
                    f"bytes not valid in its declared charset {declared!r}: replaced")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), "not UTF-8 and no charset declared: read as windows-1252"
