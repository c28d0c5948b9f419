"""Test documents made in code: PDFs (fpdf2), screenshots with text (Pillow), HTML, Markdown and SVG files.

No binary fixture is committed; every file a documents test reads is written here.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def text_image(path: Path | None, lines: list[str], size: tuple[int, int] = (900, 200), font_size: int = 36,
               color: tuple[int, int, int] = (0, 0, 0), background: tuple[int, int, int] = (255, 255, 255)
               ) -> Image.Image:
    """A screenshot-like image with ``lines`` of black text on white (Pillow's built-in scalable font)."""
    img = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=font_size)
    y = 20
    for line in lines:
        draw.text((24, y), line, fill=color, font=font)
        y += int(font_size * 1.5)
    if path is not None:
        img.save(path)
    return img


def make_pdf(path: Path, pages: list[str | None], *, scanned: dict[int, list[str]] | None = None,
             figure: Path | Image.Image | None = None, password: str | None = None, page_size: tuple[float, float] | None = None
             ) -> Path:
    """A PDF with one page per entry: text (``str``) or, for ``None``, only a picture of text (``scanned``)."""
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format=page_size or "A4")
    pdf.set_auto_page_break(False)
    scanned = scanned or {}
    for i, text in enumerate(pages):
        pdf.add_page()
        if text is not None:
            pdf.set_font("Helvetica", size=14)
            pdf.set_xy(50, 60)
            pdf.multi_cell(480, 18, text)
            if figure is not None and i == 0:
                pdf.image(figure if isinstance(figure, Image.Image) else str(figure), x=50, y=300, w=200)
        else:
            img = text_image(None, scanned.get(i, ["scanned page"]), size=(1200, 300), font_size=48)
            tmp = path.with_name(f".{path.stem}-scan{i}.png")
            img.save(tmp)
            pdf.image(str(tmp), x=40, y=80, w=500)
            tmp.unlink()
    if password is not None:
        pdf.set_encryption(owner_password=password + "-owner", user_password=password)
    pdf.output(str(path))
    return path


SVG_OK = """<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
<title>red circle icon</title><circle cx="32" cy="32" r="28" fill="#d00"/></svg>"""

SVG_EXTERNAL = """<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64">
<image xlink:href="/etc/hostname" width="64" height="64"/></svg>"""

SVG_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE svg [
<!ENTITY a "lol">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
]>
<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><title>&d;</title></svg>"""

SVG_GIANT = """<svg xmlns="http://www.w3.org/2000/svg" width="1000000" height="500000">
<rect width="1000000" height="500000" fill="#0a0"/></svg>"""
