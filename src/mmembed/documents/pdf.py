"""PDF pages with pypdfium2 (PDFium): per page the text layer, a rendered page image and, optionally, the
embedded figures. Pages stream one at a time (a 300-page PDF never has more than one page in memory).

Refused with an error naming the file: encrypted (password-protected) PDFs, files PDFium cannot read
(corrupt, truncated past recovery), PDFs with more pages than ``max_pages``. A page whose size would render
to more than ``max_page_pixels`` is rendered at a lower DPI (noted), never allocated at full size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .model import DocumentError


@dataclass
class PdfPage:
    number: int  # 1-based
    text: str
    image: Image.Image
    dpi: float
    figures: list[Image.Image]
    size_pt: tuple[float, float]


def _pdfium() -> Any:
    try:
        import pypdfium2 as pdfium
    except ImportError as exc:  # pragma: no cover - comes with the documents extra
        raise DocumentError("reading PDF needs `pypdfium2`: pip install 'mmembed[documents]'") from exc
    return pdfium


def open_pdf(path: Path, name: str, *, max_pages: int) -> Any:
    """Open a PDF or raise :class:`DocumentError` naming it (encrypted, corrupt, over the page cap, empty)."""
    pdfium = _pdfium()
    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        msg = str(exc)
        if "password" in msg.lower():
            raise DocumentError(f"PDF {name} is encrypted (password-protected); mmembed does not open "
                                "encrypted PDFs: decrypt it first (e.g. `qpdf --decrypt`)") from None
        raise DocumentError(f"PDF {name} cannot be read (corrupt or truncated?): {msg}") from None
    try:
        n = len(pdf)
    except Exception as exc:  # noqa: BLE001
        pdf.close()
        raise DocumentError(f"PDF {name} cannot be read: {exc}") from None
    if n == 0:
        pdf.close()
        raise DocumentError(f"PDF {name} has no pages")
    if n > max_pages:
        pdf.close()
        raise DocumentError(f"PDF {name} has {n} pages, over the cap of {max_pages} (max_pages / "
                            "--max-pages); raise the cap to index it")
    return pdf


def iter_pages(pdf: Any, name: str, *, dpi: float, max_page_pixels: int, figures: bool = False,
               min_figure_side: int = 48) -> Iterator[PdfPage]:
    """Render and read each page in turn."""
    pdfium = _pdfium()
    for i in range(len(pdf)):
        try:
            page = pdf[i]
        except pdfium.PdfiumError as exc:
            raise DocumentError(f"PDF {name}: page {i + 1} cannot be read: {exc}") from None
        try:
            w_pt, h_pt = page.get_size()
            if not (w_pt > 0 and h_pt > 0) or not math.isfinite(w_pt * h_pt):
                raise DocumentError(f"PDF {name}: page {i + 1} has no drawable size ({w_pt}x{h_pt} pt)")
            scale = dpi / 72.0
            if w_pt * h_pt * scale * scale > max_page_pixels:
                scale = math.sqrt(max_page_pixels / (w_pt * h_pt))
            textpage = page.get_textpage()
            try:
                text = textpage.get_text_range()
            finally:
                textpage.close()
            text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()
            bitmap = page.render(scale=scale)
            image = bitmap.to_pil().convert("RGB")
            bitmap.close()
            figs: list[Image.Image] = []
            if figures:
                for obj in page.get_objects(filter=(pdfium.raw.FPDF_PAGEOBJ_IMAGE,), max_depth=2):
                    try:
                        bm = obj.get_bitmap(render=False)
                        fig = bm.to_pil().convert("RGB")
                        bm.close()
                    except Exception:  # noqa: BLE001 - an undecodable embedded image is left out
                        continue
                    if min(fig.size) >= min_figure_side and fig.width * fig.height <= max_page_pixels:
                        figs.append(fig)
        except DocumentError:
            raise
        except pdfium.PdfiumError as exc:
            raise DocumentError(f"PDF {name}: page {i + 1} cannot be rendered: {exc}") from None
        finally:
            page.close()
        yield PdfPage(number=i + 1, text=text, image=image, dpi=scale * 72.0, figures=figs, size_pt=(w_pt, h_pt))
