"""Files -> :class:`DocumentChunk` s: format detection, one loader per format, figure resolution.

:func:`list_files` finds the files of a folder (or takes the files given) and names their format;
:func:`load_file` turns one file into its chunks (lazily for PDF: a page at a time); :func:`load_documents`
does both and yields every chunk, skipping (and reporting) unreadable files when asked. Per-file use is the
point of :func:`load_file`: a distributed indexer can hand one file to each worker.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ImageLoadError, InputError
from ..images import DEFAULT_POLICY, ImagePolicy, load_image
from ..sources import IMAGE_EXTENSIONS
from .assets import Assets
from .chunking import (DEFAULT_MAX_IMAGES, DEFAULT_MAX_TOKENS, Block, Figure, Heading, Text, TokenCounter,
                       chunk_blocks, estimate_tokens, merge_text_parts)
from .model import Document, DocumentChunk, DocumentError, SkippedFile, chunk_id, file_sha256

logger = logging.getLogger(__name__)

Granularity = Literal["page", "block"]
OcrMode = Literal["auto", "always", "never"]

_EXT = {".pdf": "pdf", ".html": "html", ".htm": "html", ".xhtml": "html", ".md": "markdown",
        ".markdown": "markdown", ".svg": "svg", **{e: "image" for e in IMAGE_EXTENSIONS}}
#: Largest HTML/Markdown file read (bytes).
MAX_TEXT_FILE_BYTES = 32 * 1024 * 1024


@dataclass
class LoadOptions:
    """How files become chunks.

    Attributes:
        dpi: PDF page render resolution.
        granularity: ``"page"`` (page image + page text, one record per page) or ``"block"`` (page text split
            at the token budget; the page's embedded figures with the last block).
        ocr: OCR standalone images too (``--ocr``). PDF pages without a text layer are OCRed unless
            ``pdf_ocr=False``.
        max_pages: PDFs with more pages are refused, naming the cap.
        max_page_pixels: a page that would render larger is rendered at a lower DPI.
        max_tokens / max_images / count_tokens: the chunking budget (see :mod:`mmembed.documents.chunking`).
        image_policy: remote images in pages are used only when it allows them (off by default).
    """

    dpi: float = 100.0
    granularity: Granularity = "page"
    ocr: bool = False
    pdf_ocr: bool = True
    pdf_figures: bool = False
    max_pages: int = 2000
    max_page_pixels: int = 16_000_000
    max_tokens: int = DEFAULT_MAX_TOKENS
    max_images: int = DEFAULT_MAX_IMAGES
    count_tokens: TokenCounter | None = None
    image_policy: ImagePolicy = DEFAULT_POLICY
    svg_max_side: int = 1024

    def __post_init__(self) -> None:
        if self.granularity not in ("page", "block"):
            raise InputError(f"granularity must be 'page' or 'block', got {self.granularity!r}")
        if not (isinstance(self.dpi, (int, float)) and 10 <= self.dpi <= 600):
            raise InputError(f"dpi must be between 10 and 600, got {self.dpi!r}")
        if not (isinstance(self.max_pages, int) and self.max_pages >= 1):
            raise InputError(f"max_pages must be a positive integer, got {self.max_pages!r}")
        if self.max_tokens < 8:
            raise InputError(f"max_tokens must be >= 8, got {self.max_tokens!r}")


@dataclass
class FileEntry:
    path: Path
    root: Path
    format: str

    @property
    def source(self) -> str:
        try:
            return self.path.relative_to(self.root).as_posix()
        except ValueError:
            return self.path.name


@dataclass
class LoadReport:
    """Per-format counts of what was read, and what was skipped with the reason."""

    documents: Counter[str] = field(default_factory=Counter)
    chunks: Counter[str] = field(default_factory=Counter)
    pages: Counter[str] = field(default_factory=Counter)
    images: Counter[str] = field(default_factory=Counter)
    ocr: Counter[str] = field(default_factory=Counter)
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (source, note)
    ignored: Counter[str] = field(default_factory=Counter)  # extension -> files of no supported format

    def lines(self) -> list[str]:
        out = []
        for fmt in sorted(set(self.documents) | {s.format for s in self.skipped}):
            bits = [f"{self.documents[fmt]} documents", f"{self.chunks[fmt]} chunks"]
            if self.pages[fmt]:
                bits.append(f"{self.pages[fmt]} pages")
            bits.append(f"{self.images[fmt]} images")
            if self.ocr[fmt]:
                bits.append(f"{self.ocr[fmt]} OCRed")
            n_skip = sum(1 for s in self.skipped if s.format == fmt)
            bits.append(f"{n_skip} skipped")
            out.append(f"{fmt:<9} " + ", ".join(bits))
        if self.ignored:
            kinds = ", ".join(f"{ext or '(none)'} {n}" for ext, n in self.ignored.most_common(6))
            out.append(f"ignored   {sum(self.ignored.values())} files of other types ({kinds})")
        return out


def sniff_format(path: Path) -> str | None:
    """The format of a file by extension, confirmed or found by its first bytes."""
    fmt = _EXT.get(path.suffix.lower())
    try:
        with path.open("rb") as fh:
            head = fh.read(1024)
    except OSError:
        return fmt
    low = head.lstrip().lower()
    if head.startswith(b"%PDF"):
        return "pdf"
    if fmt in ("pdf", "image"):
        return fmt
    if fmt is None:
        if low.startswith((b"<!doctype html", b"<html")):
            return "html"
        if low.startswith(b"<svg") or (low.startswith(b"<?xml") and b"<svg" in low):
            return "svg"
    return fmt


def _is_sidecar(path: Path) -> bool:
    if path.suffix.lower() != ".txt":
        return False
    return any(path.with_suffix(ext).exists() or path.with_suffix(ext.upper()).exists()
               for ext in (*IMAGE_EXTENSIONS, ".svg"))


def list_files(path_or_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
               recursive: bool = True, report: LoadReport | None = None) -> list[FileEntry]:
    """Supported files under the given folders / the given files, sorted, with their root and format."""
    if isinstance(path_or_paths, (str, os.PathLike)):
        given = [path_or_paths]
    else:
        given = list(path_or_paths)
    out: list[FileEntry] = []
    for value in given:
        p = Path(value).expanduser()
        if p.is_dir():
            root = p  # not resolved: image records keep the locations a folder scan always gave them
            it = root.rglob("*") if recursive else root.glob("*")
            for f in sorted(it):
                if f.is_dir() or any(part.startswith(".") for part in f.relative_to(root).parts):
                    continue
                fmt = sniff_format(f)
                if fmt is None:
                    if report is not None and not _is_sidecar(f):
                        report.ignored[f.suffix.lower()] += 1
                    continue
                out.append(FileEntry(f, root, fmt))
        elif p.is_file():
            fmt = sniff_format(p)
            if fmt is None:
                raise InputError(f"{str(p)!r}: not a supported document (PDF, HTML, Markdown, SVG or image)")
            out.append(FileEntry(p, p.parent, fmt))
        else:
            raise InputError(f"{str(p)!r} does not exist")
    return out


# ---- figures in HTML/Markdown ------------------------------------------------------------------------
class FigureResolver:
    """Turns an ``<img src>`` into a Figure (or its alt text when the image is refused), with a note."""

    def __init__(self, entry: FileEntry, options: LoadOptions, assets: Assets | None, doc: Document) -> None:
        self.entry, self.options, self.assets, self.doc = entry, options, assets, doc

    def note(self, text: str) -> None:
        self.doc.notes.append(text)

    def __call__(self, src: str, alt: str) -> Figure | Text | None:
        fallback = Text(alt) if alt else None
        low = src.lower()
        if low.startswith("data:"):
            return self._data_uri(src, alt) or fallback
        if low.startswith(("http://", "https://", "//")):
            url = "https:" + src if src.startswith("//") else src
            if not self.options.image_policy.allow_remote:
                self.note(f"remote image {url[:100]} left out: remote images are off "
                          "(ImagePolicy(allow_remote=True) turns them on)")
                return fallback
            return Figure(url, alt, hashlib.sha256(url.encode()).hexdigest())
        parsed = urllib.parse.urlsplit(src)
        if parsed.scheme and len(parsed.scheme) > 1:  # file://, ftp://, javascript: ... (not C:\ paths)
            self.note(f"image {src[:100]!r} refused: the {parsed.scheme}: scheme is not read from pages")
            return fallback
        rel = urllib.parse.unquote(parsed.path)
        if not rel:
            return fallback
        base = self.entry.path.parent
        target = (base / rel) if not rel.startswith("/") else Path(rel)
        root = self.entry.root.resolve()
        try:
            resolved = target.resolve(strict=True)
        except (OSError, RuntimeError):
            self.note(f"image {rel[:100]!r} does not exist: left out")
            return fallback
        if resolved != root and root not in resolved.parents:
            self.note(f"image {rel[:100]!r} is outside the indexed root: left out")
            return fallback
        if resolved.suffix.lower() == ".svg":
            return self._svg(resolved, alt) or fallback
        try:
            loaded = load_image(resolved, self.options.image_policy.with_(root=root))
        except ImageLoadError as exc:
            self.note(f"image {rel[:100]!r} left out: {exc}")
            return fallback
        loaded.image.close() if hasattr(loaded.image, "close") else None
        return Figure(str(resolved), alt, loaded.digest)

    def _svg(self, path: Path, alt: str) -> Figure | None:
        from .svg import render_svg_file

        if self.assets is None:
            self.note(f"SVG image {path.name} left out: no assets directory to render it into")
            return None
        try:
            rendered = render_svg_file(path, path.name, max_side=self.options.svg_max_side)
        except DocumentError as exc:
            self.note(f"SVG image left out: {exc}")
            return None
        asset, digest = self.assets.put_image(rendered.image)
        caption = " ".join(x for x in (alt, rendered.title) if x)
        return Figure(str(asset), caption, digest)

    def _data_uri(self, src: str, alt: str) -> Figure | None:
        header, _, payload = src.partition(",")
        if self.assets is None:
            self.note("inline data: image left out: no assets directory to write it into")
            return None
        try:
            data = base64.b64decode(payload, validate=True) if ";base64" in header.lower() else \
                urllib.parse.unquote_to_bytes(payload)
        except (binascii.Error, ValueError):
            self.note("inline data: image left out: not valid base64")
            return None
        if len(data) > self.options.image_policy.max_bytes:
            self.note("inline data: image left out: over the size cap")
            return None
        if "svg" in header.lower():
            from .svg import render_svg_bytes

            try:
                rendered = render_svg_bytes(data, "inline SVG", max_side=self.options.svg_max_side)
            except DocumentError as exc:
                self.note(f"inline SVG left out: {exc}")
                return None
            asset, digest = self.assets.put_image(rendered.image)
            return Figure(str(asset), alt, digest)
        from ..images import decode_image

        try:
            img = decode_image(data, name="inline data: image", policy=self.options.image_policy).image
        except ImageLoadError as exc:
            self.note(f"inline image left out: {exc}")
            return None
        asset, digest = self.assets.put_image(img)
        return Figure(str(asset), alt, digest)


# ---- per-format loading ------------------------------------------------------------------------------
def _base_meta(entry: FileEntry, doc: Document) -> dict[str, Any]:
    return {"source": entry.source, "format": entry.format, "doc_sha256": doc.sha256}


def _sections_to_chunks(entry: FileEntry, doc: Document, blocks: list[Block], title: str,
                        options: LoadOptions) -> list[DocumentChunk]:
    sections = chunk_blocks(blocks, max_tokens=options.max_tokens, max_images=options.max_images,
                            count_tokens=options.count_tokens)
    chunks = []
    for i, sec in enumerate(sections):
        parts = merge_text_parts(sec.parts)
        text = "\n".join(p for p in parts if isinstance(p, str))
        meta = _base_meta(entry, doc)
        meta.update(chunk=i, heading=sec.heading or title or "", title=title or None)
        images = [p["image"] for p in parts if isinstance(p, dict)]
        if images:
            meta["images"] = images
        chunks.append(DocumentChunk(chunk_id(entry.source, f"chunk:{i}", text, sec.digests), parts, meta))
    return chunks


def _read(entry: FileEntry, limit: int) -> bytes:
    try:
        size = entry.path.stat().st_size
        if size > limit:
            raise DocumentError(f"{entry.format} file {entry.source} is {size} bytes, over the {limit}-byte cap")
        return entry.path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{entry.source} cannot be read: {exc}") from None


def _load_pdf(entry: FileEntry, doc: Document, pdf: Any, options: LoadOptions, assets: Assets,
              report: LoadReport | None) -> Iterator[DocumentChunk]:
    from .ocr import ocr_text
    from .pdf import iter_pages

    count = options.count_tokens or estimate_tokens
    long_pages = 0
    n_chunk = 0
    try:
        for page in iter_pages(pdf, entry.source, dpi=options.dpi, max_page_pixels=options.max_page_pixels,
                               figures=options.pdf_figures or options.granularity == "block"):
            if page.dpi < options.dpi - 0.5:
                doc.notes.append(f"page {page.number} ({page.size_pt[0]:.0f}x{page.size_pt[1]:.0f} pt) rendered at "
                                 f"{page.dpi:.0f} dpi to stay under {options.max_page_pixels} pixels")
            text, text_from = page.text, "text_layer"
            if len(text.strip()) < 3 and options.pdf_ocr:
                text, text_from = ocr_text(page.image, name=f"{entry.source} page {page.number}"), "ocr"
                if report is not None:
                    report.ocr[entry.format] += 1
            asset, digest = assets.put_image(page.image)
            page.image.close()
            if report is not None:
                report.pages[entry.format] += 1
            meta = _base_meta(entry, doc)
            meta.update(page=page.number, pages=doc.pages, text_from=text_from, dpi=round(page.dpi, 1))
            if options.granularity == "page":
                if count(text) > options.max_tokens:
                    long_pages += 1
                parts: list[Any] = [{"type": "image", "image": str(asset)}]
                if text:
                    parts.append(text)
                meta.update(chunk=n_chunk, images=[str(asset)])
                yield DocumentChunk(chunk_id(entry.source, f"page:{page.number}", text, [digest]), parts, meta)
                n_chunk += 1
                for k, fig in enumerate(page.figures):  # pdf_figures=True: each embedded figure on its own
                    fpath, fdigest = assets.put_image(fig)
                    fmeta = dict(meta, chunk=n_chunk, figure=k, images=[str(fpath)], page_image=str(asset))
                    yield DocumentChunk(chunk_id(entry.source, f"page:{page.number}:figure:{k}", "", [fdigest]),
                                        [{"type": "image", "image": str(fpath)}], fmeta)
                    n_chunk += 1
                continue
            blocks: list[Block] = [Text(p) for p in text.split("\n\n")] if text else []
            for fig in page.figures:
                fpath, fdigest = assets.put_image(fig)
                blocks.append(Figure(str(fpath), "", fdigest))
            if not blocks:  # a blank page: its image stands for it
                blocks.append(Figure(str(asset), "", digest))
            for j, sec in enumerate(chunk_blocks(blocks, max_tokens=options.max_tokens,
                                                 max_images=options.max_images, count_tokens=options.count_tokens)):
                parts = merge_text_parts(sec.parts)
                ctext = "\n".join(p for p in parts if isinstance(p, str))
                m = dict(meta, chunk=n_chunk, block=j, page_image=str(asset))
                imgs = [p["image"] for p in parts if isinstance(p, dict)]
                if imgs:
                    m["images"] = imgs
                yield DocumentChunk(chunk_id(entry.source, f"page:{page.number}:block:{j}", ctext, sec.digests),
                                    parts, m)
                n_chunk += 1
    finally:
        pdf.close()
    if long_pages:
        doc.notes.append(f"{long_pages} pages hold more text than the {options.max_tokens}-token chunk budget: "
                         "their records keep the whole text, the encoder reads what fits its window "
                         "(granularity='block' splits pages into chunks)")


def _load_image(entry: FileEntry, doc: Document, options: LoadOptions,
                report: LoadReport | None) -> list[DocumentChunk]:
    """Same record as a folder of captioned images always gave (content-hash id, ``source``), plus OCR text."""
    caption_file = entry.path.with_suffix(".txt")
    caption = caption_file.read_text(encoding="utf-8", errors="replace").strip() if caption_file.is_file() else ""
    meta: dict[str, Any] = {"source": entry.source}
    if options.ocr:
        from .ocr import ocr_text

        try:
            loaded = load_image(entry.path, options.image_policy)
        except ImageLoadError as exc:
            raise DocumentError(str(exc)) from None
        text = ocr_text(loaded.image, name=entry.source)
        if report is not None:
            report.ocr[entry.format] += 1
        meta["text_from"] = "ocr" if text else "ocr-empty"
        if text:
            caption = f"{caption}\n{text}" if caption else text
    parts: list[Any] = [{"type": "image", "image": entry.path}] + ([caption] if caption else [])
    # id "" = the store keys it by content hash, as folders of images always were
    return [DocumentChunk("", parts, meta)]


def _load_svg(entry: FileEntry, doc: Document, options: LoadOptions, assets: Assets | None) -> list[DocumentChunk]:
    from .svg import render_svg_bytes

    if assets is None:
        raise DocumentError(f"SVG {entry.source}: an assets directory is needed for the rendered image")
    rendered = render_svg_bytes(_read(entry, 8 * 1024 * 1024), entry.source, max_side=options.svg_max_side)
    asset, digest = assets.put_image(rendered.image)
    caption_file = entry.path.with_suffix(".txt")
    caption = caption_file.read_text(encoding="utf-8", errors="replace").strip() if caption_file.is_file() else ""
    text = "\n".join(x for x in (caption, rendered.title) if x)
    parts: list[Any] = [{"type": "image", "image": str(asset)}] + ([text] if text else [])
    meta = _base_meta(entry, doc)
    meta.update(chunk=0, images=[str(asset)])
    return [DocumentChunk(chunk_id(entry.source, "svg", text, [digest]), parts, meta)]


def load_file(entry: FileEntry | str | os.PathLike[str], *, options: LoadOptions | None = None,
              assets: Assets | str | os.PathLike[str] | None = None,
              report: LoadReport | None = None) -> tuple[Document, Iterator[DocumentChunk]]:
    """One file -> its Document (provenance) and an iterator over its chunks.

    Errors (encrypted/corrupt PDF, unsafe SVG, unreadable file) raise :class:`DocumentError` naming the file,
    either here or while iterating (PDF pages stream).
    """
    options = options or LoadOptions()
    if not isinstance(entry, FileEntry):
        listed = list_files(entry)
        entry = listed[0]
    if assets is not None and not isinstance(assets, Assets):
        assets = Assets(assets)
    try:
        digest = file_sha256(entry.path.read_bytes()) if entry.format != "image" else ""
    except OSError as exc:
        raise DocumentError(f"{entry.source} cannot be read: {exc}") from None
    doc = Document(path=str(entry.path), source=entry.source, format=entry.format, sha256=digest)
    fmt = entry.format
    if fmt == "pdf":
        from .pdf import open_pdf

        if assets is None:
            raise DocumentError(f"PDF {entry.source}: an assets directory is needed for the rendered pages")
        pdf = open_pdf(entry.path, entry.source, max_pages=options.max_pages)
        doc.pages = len(pdf)
        return doc, _load_pdf(entry, doc, pdf, options, assets, report)
    if fmt == "image":
        return doc, iter(_load_image(entry, doc, options, report))
    if fmt == "svg":
        return doc, iter(_load_svg(entry, doc, options, assets))
    text, note = _decode(entry)
    if note:
        doc.notes.append(note)
    resolver = FigureResolver(entry, options, assets, doc)
    if fmt == "html":
        from .html import parse_html

        blocks, title = parse_html(text, resolver)
    else:
        from .markdown import parse_markdown

        blocks, title = parse_markdown(text, entry.source, resolver)
    return doc, iter(_sections_to_chunks(entry, doc, blocks, title, options))


def _decode(entry: FileEntry) -> tuple[str, str | None]:
    data = _read(entry, MAX_TEXT_FILE_BYTES)
    if entry.format == "html":
        from .html import decode_html

        return decode_html(data)
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), "not UTF-8: read as windows-1252"


def count_chunk(report: LoadReport, fmt: str, chunk: DocumentChunk) -> None:
    report.chunks[fmt] += 1
    report.images[fmt] += len(chunk.images)


def load_documents(path_or_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                   assets_dir: str | os.PathLike[str] | None = None, options: LoadOptions | None = None,
                   recursive: bool = True, on_error: Literal["raise", "skip"] = "raise",
                   report: LoadReport | None = None, **option_values: Any) -> Iterator[DocumentChunk]:
    """Yield the chunks of every supported file under ``path_or_paths`` (folders and/or files), in order.

    Each chunk carries provenance metadata (``source``, ``format``, ``page`` or ``heading``, ``chunk``,
    ``doc_sha256``, ``images``). Rendered page images and SVGs go to ``assets_dir`` (default: the mmembed
    cache's ``assets`` folder). ``on_error="skip"`` leaves out a file that cannot be read and records it in
    ``report.skipped`` (nothing of it is yielded when it fails before its first chunk; a PDF failing on a
    later page stops there). Keyword options are :class:`LoadOptions` fields (``dpi=150, ocr=True``...).
    """
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if options is None:
        options = LoadOptions(**option_values)
    elif option_values:
        raise InputError("give either options= or option keywords, not both")
    if assets_dir is None:
        from ..data.fetch import cache_dir

        assets_dir = cache_dir() / "assets"
    assets = Assets(assets_dir)
    report = report if report is not None else LoadReport()
    for entry in list_files(path_or_paths, recursive=recursive, report=report):
        try:
            doc, chunks = load_file(entry, options=options, assets=assets, report=report)
            buffered = list(chunks) if entry.format != "pdf" else None
            stream = iter(buffered) if buffered is not None else chunks
            n = 0
            for chunk in stream:
                count_chunk(report, entry.format, chunk)
                n += 1
                yield chunk
            report.documents[entry.format] += 1
            report.notes.extend((entry.source, note) for note in doc.notes)
        except DocumentError as exc:
            if on_error == "raise":
                raise
            report.skipped.append(SkippedFile(str(entry.path), entry.format, str(exc)))
            logger.warning("skipping %s", exc)
