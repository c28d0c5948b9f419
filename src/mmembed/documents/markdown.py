"""Markdown -> HTML (markdown-it-py, CommonMark + tables) -> the HTML reader's blocks, so images, alt text,
headings and raw HTML figures are handled by one parser."""

from __future__ import annotations

from .chunking import Block
from .html import FigureResolver, parse_html
from .model import DocumentError


def markdown_to_html(text: str, name: str) -> str:
    try:
        from markdown_it import MarkdownIt
    except ImportError as exc:  # pragma: no cover - markdown-it-py comes with the documents extra
        raise DocumentError(f"reading Markdown {name} needs `markdown-it-py`: pip install 'mmembed[documents]'"
                            ) from exc
    return MarkdownIt("commonmark").enable("table").render(text)


def parse_markdown(text: str, name: str, resolve: FigureResolver) -> tuple[list[Block], str]:
    blocks, _ = parse_html(markdown_to_html(text, name), resolve)
    title = next((b.text for b in blocks if type(b).__name__ == "Heading"), "")
    return blocks, title
