"""Files -> documents: each format's chunks and provenance, the chunking rule, and every bad input of issue 13.

All inputs are made in code (tests/documents_support.py). OCR runs on only a handful of images here.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from documents_support import SVG_EXTERNAL, SVG_GIANT, SVG_LAUGHS, SVG_OK, make_pdf, text_image
from mmembed import coerce
from mmembed.documents import (DocumentError, LoadOptions, LoadReport, chunk_blocks, list_files, load_documents,
                               load_file)
from mmembed.documents.chunking import Figure, Heading, Text, estimate_tokens
from mmembed.documents.ocr import Ocr, ocr_text
from mmembed.documents.svg import render_svg_bytes
from mmembed.errors import InputError


def _load(path: Path, tmp_path: Path, **options: object) -> list:
    return list(load_documents(path, assets_dir=tmp_path / "assets", **options))


# ---- PDF -----------------------------------------------------------------------------------------------
def test_pdf_pages_have_text_layer_rendered_image_and_provenance(tmp_path: Path) -> None:
    fig = text_image(tmp_path / "fig.png", ["FIGURE"], size=(300, 120))
    pdf = make_pdf(tmp_path / "manual.pdf", ["Volcanoes erupt molten rock.", "Glaciers carve valleys."], figure=fig)
    chunks = _load(pdf, tmp_path, dpi=72)
    assert [c.metadata["page"] for c in chunks] == [1, 2]
    first = chunks[0]
    assert first.metadata["source"] == "manual.pdf" and first.metadata["format"] == "pdf"
    assert first.metadata["text_from"] == "text_layer" and first.metadata["pages"] == 2
    assert "Volcanoes erupt molten rock." in first.text
    [img] = first.images
    assert Path(img).is_file() and Path(img).is_relative_to(tmp_path / "assets")
    with Image.open(img) as im:  # A4 at 72 dpi
        assert abs(im.width - 595) <= 1 and abs(im.height - 842) <= 1
    assert first.metadata["images"] == [img]
    # an interleaved input the store accepts: the page image, then its text
    item = coerce(first.item)
    assert item.modality == "image+text" and item.image_uris == [img]
    # ids are stable content hashes: loading again gives the same ids and writes no new asset
    n_assets = len(list((tmp_path / "assets").rglob("*.png")))
    again = _load(pdf, tmp_path, dpi=72)
    assert [c.id for c in again] == [c.id for c in chunks]
    assert len(list((tmp_path / "assets").rglob("*.png"))) == n_assets
    # a higher DPI renders a bigger page
    big = _load(pdf, tmp_path, dpi=144)
    with Image.open(big[0].images[0]) as im:
        assert im.width >= 2 * 595 - 2


def test_pdf_block_granularity_splits_text_and_keeps_embedded_figures(tmp_path: Path) -> None:
    fig = text_image(tmp_path / "fig.png", ["CHART"], size=(300, 150))
    long_text = " ".join(f"Sentence number {i} talks about rivers and lakes." for i in range(60))
    pdf = make_pdf(tmp_path / "r.pdf", [long_text], figure=fig)
    chunks = _load(pdf, tmp_path, granularity="block", max_tokens=64, dpi=50)
    assert len(chunks) >= 3
    assert all(estimate_tokens(c.text) <= 64 for c in chunks)
    assert all(c.metadata["page"] == 1 for c in chunks)
    assert [c.metadata["chunk"] for c in chunks] == list(range(len(chunks)))
    figures = [i for c in chunks for i in c.images]
    assert len(figures) == 1  # the embedded picture, extracted as its own asset
    with Image.open(figures[0]) as im:
        assert im.size == (300, 150)
    # page granularity with pdf_figures: the page record, then the figure on its own
    page, figure = _load(pdf, tmp_path, pdf_figures=True, dpi=50)
    assert page.metadata["page"] == figure.metadata["page"] == 1 and figure.metadata["figure"] == 0
    assert figure.images == figures and figure.text == "" and figure.metadata["page_image"] == page.images[0]


def test_scanned_pdf_page_is_read_by_ocr(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "scan.pdf", ["Typed page with a text layer.", None],
                   scanned={1: ["Invoice total 4711 euros"]})
    report = LoadReport()
    chunks = list(load_documents(pdf, assets_dir=tmp_path / "a", report=report, dpi=100))
    assert chunks[0].metadata["text_from"] == "text_layer"
    assert chunks[1].metadata["text_from"] == "ocr"
    assert "4711" in chunks[1].text and "invoice" in chunks[1].text.lower()
    assert report.ocr["pdf"] == 1 and report.pages["pdf"] == 2
    # OCR can be turned off: the page is then its image alone
    off = list(load_documents(pdf, assets_dir=tmp_path / "a", pdf_ocr=False))
    assert off[1].text == "" and len(off[1].images) == 1


# ---- HTML / Markdown -------------------------------------------------------------------------------------
def test_html_reading_order_captions_headings(tmp_path: Path) -> None:
    text_image(tmp_path / "chart.png", ["chart"], size=(120, 80))
    text_image(tmp_path / "photo.png", ["photo"], size=(120, 80))
    (tmp_path / "page.html").write_text("""<!doctype html><html><head><title>Guide</title>
<script>var hidden = "never indexed";</script><style>p {color: red}</style></head><body>
<h1>Install</h1><p>Download the archive.</p>
<figure><img src="chart.png" alt="bar chart"><figcaption>Figure 1: speed by version</figcaption></figure>
<p>Then run the installer.</p>
<h2>Verify</h2><p>Check the checksum.</p><img src="photo.png" alt="the dialog">
<h1>Usage</h1><p>Start the program.</p></body></html>""")
    chunks = _load(tmp_path / "page.html", tmp_path)
    assert [c.metadata["heading"] for c in chunks] == ["Install", "Install > Verify", "Usage"]
    first = chunks[0]
    kinds = ["image" if isinstance(p, dict) else p for p in first.parts]
    assert kinds == ["Install\nDownload the archive.", "image", "bar chart Figure 1: speed by version\n"
                     "Then run the installer."]
    assert first.images == [str((tmp_path / "chart.png").resolve())]
    assert first.metadata["title"] == "Guide"
    assert "never indexed" not in " ".join(c.text for c in chunks) and "color" not in chunks[0].text
    assert chunks[1].images == [str((tmp_path / "photo.png").resolve())] and "the dialog" in chunks[1].text


def test_markdown_images_alt_text_and_split_at_token_budget(tmp_path: Path) -> None:
    text_image(tmp_path / "diagram.png", ["d"], size=(64, 64))
    (tmp_path / "icon.svg").write_text(SVG_OK)
    body = "\n\n".join(f"Paragraph {i} explains a detail of the frobnicator in some words." for i in range(40))
    (tmp_path / "notes.md").write_text(f"# Notes\n\n![the diagram](diagram.png)\n\n{body}\n\n"
                                       "## Icons\n\n![an icon](icon.svg)\n")
    chunks = _load(tmp_path / "notes.md", tmp_path, max_tokens=60)
    assert len(chunks) > 5 and all(estimate_tokens(c.text) <= 60 for c in chunks)
    assert chunks[0].images == [str((tmp_path / "diagram.png").resolve())] and "the diagram" in chunks[0].text
    last = chunks[-1]
    assert last.metadata["heading"] == "Notes > Icons"
    [svg_asset] = last.images  # the SVG figure is rendered into the assets directory
    assert Path(svg_asset).is_relative_to(tmp_path / "assets") and "red circle icon" in last.text
    assert {c.metadata["format"] for c in chunks} == {"markdown"}


def test_chunking_rule() -> None:
    blocks = [Heading(1, "A"), Text("one two three"), Figure("x.png", "cap"), Figure("y.png"), Figure("z.png"),
              Heading(2, "B"), Text("word " * 200)]
    secs = chunk_blocks(blocks, max_tokens=50, max_images=2)
    assert secs[0].heading == "A" and secs[0].images == 2
    assert secs[1].heading == "A" and secs[1].images == 1  # a third image starts a new chunk
    assert all(s.heading == "A > B" for s in secs[2:]) and len(secs) >= 7
    counted = chunk_blocks([Text("a b c d e f")], max_tokens=8, count_tokens=lambda t: 3 * len(t.split()))
    assert [s.parts for s in counted] == [["a b"], ["c d"], ["e f"]]


# ---- SVG -------------------------------------------------------------------------------------------------
def test_svg_file_is_rendered_with_title_and_sidecar(tmp_path: Path) -> None:
    (tmp_path / "dot.svg").write_text(SVG_OK)
    (tmp_path / "dot.txt").write_text("a warning light")
    [chunk] = _load(tmp_path / "dot.svg", tmp_path)
    assert chunk.metadata["format"] == "svg" and chunk.text == "a warning light\nred circle icon"
    with Image.open(chunk.images[0]) as im:
        arr = np.asarray(im.convert("RGB"))
    assert im.size == (128, 128) and tuple(arr[64, 64]) == (221, 0, 0) and tuple(arr[1, 1]) == (255, 255, 255)


def test_svg_bad_inputs_are_refused_with_the_file_named(tmp_path: Path) -> None:
    for name, svg, words in [("ext.svg", SVG_EXTERNAL, "external resource"), ("lol.svg", SVG_LAUGHS, "entit"),
                             ("broken.svg", "<svg><g></svg>", "not well-formed")]:
        (tmp_path / name).write_text(svg)
        with pytest.raises(DocumentError, match=words) as err:
            _load(tmp_path / name, tmp_path)
        assert name in str(err.value)
    css = '<svg xmlns="http://www.w3.org/2000/svg"><style>@import url(http://x/y.css);</style></svg>'
    with pytest.raises(DocumentError, match="@import"):
        render_svg_bytes(css.encode(), "css.svg")
    fill = '<svg xmlns="http://www.w3.org/2000/svg"><rect fill="url(file:///etc/x#p)" width="5" height="5"/></svg>'
    with pytest.raises(DocumentError, match="external resource"):
        render_svg_bytes(fill.encode(), "fill.svg")


def test_svg_giant_dimensions_render_small(tmp_path: Path) -> None:
    started = time.perf_counter()
    out = render_svg_bytes(SVG_GIANT.encode(), "giant.svg", max_side=512)
    assert out.image.size == (512, 256) and time.perf_counter() - started < 10
    assert tuple(np.asarray(out.image)[128, 256]) == (0, 170, 0)


# ---- bad inputs ------------------------------------------------------------------------------------------
def test_encrypted_corrupt_and_truncated_pdfs(tmp_path: Path) -> None:
    enc = make_pdf(tmp_path / "locked.pdf", ["secret plans"], password="pw")
    with pytest.raises(DocumentError, match=r"locked\.pdf is encrypted"):
        _load(enc, tmp_path)
    (tmp_path / "junk.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20)
    with pytest.raises(DocumentError, match=r"junk\.pdf cannot be read"):
        _load(tmp_path / "junk.pdf", tmp_path)
    good = make_pdf(tmp_path / "good.pdf", [f"page {i}" for i in range(3)]).read_bytes()
    (tmp_path / "cut.pdf").write_bytes(good[: len(good) // 3])
    try:  # PDFium recovers what it can from a truncated file; either it reads pages or it names the file
        chunks = _load(tmp_path / "cut.pdf", tmp_path)
    except DocumentError as exc:
        assert "cut.pdf" in str(exc)
    else:
        assert all(c.metadata["source"] == "cut.pdf" for c in chunks)
    # skipping mode: the bad files are reported, the good one is read
    report = LoadReport()
    (tmp_path / "good.pdf").write_bytes(good)
    chunks = list(load_documents([tmp_path / "locked.pdf", tmp_path / "junk.pdf", tmp_path / "good.pdf"],
                                 assets_dir=tmp_path / "a", on_error="skip", report=report))
    assert {c.metadata["source"] for c in chunks} == {"good.pdf"}
    assert sorted(Path(s.path).name for s in report.skipped) == ["junk.pdf", "locked.pdf"]


def test_page_cap_and_huge_page(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "long.pdf", [f"page {i}" for i in range(12)])
    with pytest.raises(DocumentError, match=r"long\.pdf has 12 pages, over the cap of 10"):
        _load(pdf, tmp_path, max_pages=10)
    assert len(_load(pdf, tmp_path, max_pages=12, dpi=20)) == 12
    huge = make_pdf(tmp_path / "poster.pdf", ["a poster"], page_size=(14400, 14400))
    report = LoadReport()
    [chunk] = list(load_documents(huge, assets_dir=tmp_path / "a", report=report, max_page_pixels=1_000_000))
    with Image.open(chunk.images[0]) as im:
        assert im.width * im.height <= 1_000_000 and im.width >= 990
    assert chunk.metadata["dpi"] < 6
    assert any("rendered at 5 dpi" in note for _, note in report.notes)


def test_html_unsafe_and_remote_references(tmp_path: Path) -> None:
    root = tmp_path / "site"
    root.mkdir()
    text_image(tmp_path / "secret.png", ["outside"], size=(50, 50))
    text_image(root / "ok.png", ["ok"], size=(50, 50))
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    (root / "p.html").write_text("""<html><body><p>Intro text.</p>
<img src="file:///etc/hostname" alt="file scheme"><img src="../secret.png" alt="parent dir">
<img src="link.png" alt="symlink out"><img src="/etc/hostname" alt="absolute">
<img src="https://example.org/cat.png" alt="a remote cat"><img src="ok.png" alt="fine"></body></html>""")
    report = LoadReport()
    chunks = list(load_documents(root, assets_dir=tmp_path / "a", report=report))
    [page] = [c for c in chunks if c.metadata["source"] == "p.html"]
    assert page.images == [str((root / "ok.png").resolve())]
    for alt in ("file scheme", "parent dir", "symlink out", "a remote cat", "fine"):
        assert alt in page.text  # a refused image keeps its alt text
    notes = " | ".join(n for _, n in report.notes)
    assert "file: scheme" in notes and "outside the indexed root" in notes and "remote images are off" in notes
    # with the remote policy on, the URL is kept for the store to fetch under that policy
    from mmembed import ImagePolicy

    on = list(load_documents(root / "p.html", assets_dir=tmp_path / "a",
                             image_policy=ImagePolicy(allow_remote=True)))
    assert "https://example.org/cat.png" in on[0].images


def test_non_utf8_html(tmp_path: Path) -> None:
    (tmp_path / "declared.html").write_bytes('<html><head><meta charset="iso-8859-1"></head><body><p>Crème brûlée '
                                             "à la française</p></body></html>".encode("latin-1"))
    (tmp_path / "bare.html").write_bytes("<html><body><p>Smörgåsbord für alle</p></body></html>".encode("cp1252"))
    report = LoadReport()
    chunks = {c.metadata["source"]: c for c in load_documents(tmp_path, assets_dir=tmp_path / "a", report=report)}
    assert chunks["declared.html"].text == "Crème brûlée à la française"
    assert chunks["bare.html"].text == "Smörgåsbord für alle"
    assert ("bare.html", "not UTF-8 and no charset declared: read as windows-1252") in report.notes


def test_markdown_missing_images_are_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "r.md").write_text("# Readme\n\nSee ![the screenshot](shots/missing.png) below.\n")
    report = LoadReport()
    [chunk] = list(load_documents(tmp_path, assets_dir=tmp_path / "a", report=report))
    assert chunk.images == [] and "the screenshot" in chunk.text
    assert report.notes == [("r.md", "image 'shots/missing.png' does not exist: left out")]


def test_ocr_on_blank_and_one_pixel_images(tmp_path: Path) -> None:
    assert ocr_text(Image.new("RGB", (1, 1), (0, 0, 0))) == ""
    assert ocr_text(Image.new("RGB", (640, 480), (255, 255, 255))) == ""
    # the engine itself on a near-blank image (faint noise): no text, no crash
    rng = np.random.default_rng(0)
    noise = Image.fromarray((230 + rng.integers(0, 26, (200, 300, 3))).astype(np.uint8))
    assert Ocr.lines(noise) == []
    # through the loader with --ocr: a blank screenshot is indexed as its image, marked as OCR-empty
    Image.new("RGB", (300, 100), (255, 255, 255)).save(tmp_path / "blank.png")
    Image.new("RGB", (1, 1), (9, 9, 9)).save(tmp_path / "dot.png")
    chunks = {c.metadata["source"]: c for c in load_documents(tmp_path, assets_dir=tmp_path / "a", ocr=True)}
    assert chunks["blank.png"].metadata["text_from"] == "ocr-empty" and chunks["blank.png"].text == ""
    assert chunks["dot.png"].text == ""


def test_listing_sniffs_content_and_reports_other_files(tmp_path: Path) -> None:
    make_pdf(tmp_path / "no-extension", ["sniffed as PDF"])
    (tmp_path / "page.htm").write_text("<html><body>x</body></html>")
    (tmp_path / "style.css").write_text("p{}")
    text_image(tmp_path / "a.png", ["a"], size=(40, 40))
    (tmp_path / "a.txt").write_text("caption of a")
    report = LoadReport()
    entries = list_files(tmp_path, report=report)
    assert [(e.source, e.format) for e in entries] == [("a.png", "image"), ("no-extension", "pdf"),
                                                      ("page.htm", "html")]
    assert dict(report.ignored) == {".css": 1}  # the sidecar caption is not "ignored"
    with pytest.raises(InputError, match="does not exist"):
        list_files(tmp_path / "nope")
    with pytest.raises(InputError, match="granularity"):
        LoadOptions(granularity="sentence")  # type: ignore[arg-type]
    doc, chunks = load_file(entries[1], assets=tmp_path / "assets")
    assert doc.pages == 1 and doc.format == "pdf" and len(list(chunks)) == 1


def test_cli_indexes_one_document_and_refuses_bad_options(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mmembed.cli import app

    pdf = make_pdf(tmp_path / "one.pdf", ["Only page of this file."])
    runner = CliRunner()
    base = ["--db", str(tmp_path / "db"), "-e", "reliability.toy_plugin:toy"]
    bad = runner.invoke(app, ["index", str(pdf), *base, "--granularity", "sentence"])
    assert bad.exit_code == 2 and "granularity must be 'page' or 'block'" in bad.output
    res = runner.invoke(app, ["index", str(pdf), *base, "--dpi", "20"])
    assert res.exit_code == 0, res.output
    assert "pdf       1 documents, 1 chunks, 1 pages, 1 images, 0 skipped" in res.stdout
    assert (tmp_path / "db_assets").is_dir()
    capped = runner.invoke(app, ["index", str(make_pdf(tmp_path / "two.pdf", ["a", "b"])), *base, "--max-pages", "1",
                                 "--strict"])
    assert capped.exit_code == 2 and "two.pdf has 2 pages, over the cap of 1" in capped.output
