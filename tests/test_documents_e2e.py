"""Issue 13's "done when": ``mmembed index --ocr`` with the default model on a folder mixing PDFs, HTML,
Markdown, SVG, PNG screenshots and a few dozen ordinary captioned images; a phrase that exists only as pixels in
a screenshot finds that screenshot first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from documents_support import SVG_OK, make_pdf, text_image
from mmembed.cli import app

CAPTIONS = ["a red apple", "a green leaf", "the blue sea", "a yellow banana", "a brown dog", "a white cloud",
            "an orange cat", "a purple flower", "a black car", "a grey rock", "a pink pig", "a golden crown"]


def make_folder(root: Path) -> None:
    pics = root / "pictures"
    pics.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(24):  # ordinary captioned pictures (soft gradients, no text)
        base = rng.integers(0, 255, 3)
        grad = np.linspace(0, 40, 48)[None, :, None]
        arr = np.clip(base[None, None, :] + grad, 0, 255).astype(np.uint8).repeat(48, axis=0)
        Image.fromarray(arr).save(pics / f"pic-{i:02d}.png")
        (pics / f"pic-{i:02d}.txt").write_text(f"{CAPTIONS[i % len(CAPTIONS)]}, photo {i}")
    shots = root / "screenshots"
    shots.mkdir()
    text_image(shots / "dialog.png", ["Printer spooler stopped", "unexpectedly at midnight"])
    text_image(shots / "login.png", ["Welcome back, enter", "your password below"])
    make_pdf(root / "manual.pdf", ["Chapter one: assembling the bookshelf with four screws.",
                                   "Chapter two: painting the shelves in bright colours."])
    (root / "faq.md").write_text("# Questions\n\nHow do I water cactus plants? Rarely, once a month.\n")
    (root / "notes.html").write_text("<html><body><h1>Weather</h1><p>Thunderstorms expected on the coast."
                                     "</p></body></html>")
    (root / "icon.svg").write_text(SVG_OK)


def test_index_with_ocr_finds_text_that_only_exists_as_pixels(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    make_folder(folder)
    db = tmp_path / "db"
    runner = CliRunner()
    res = runner.invoke(app, ["index", str(folder), "--db", str(db), "--ocr", "--dpi", "50"])
    assert res.exit_code == 0, res.output
    assert "image     26 documents, 26 chunks, 26 images, 26 OCRed, 0 skipped" in res.stdout
    for fmt in ("pdf ", "markdown", "html", "svg"):
        assert any(line.startswith(fmt) and "1 documents" in line for line in res.stdout.splitlines()), fmt
    res = runner.invoke(app, ["search", "printer spooler stopped", "--db", str(db), "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.stdout)
    assert hits[0]["metadata"]["source"] == "screenshots/dialog.png"
    assert "Printer spooler stopped" in hits[0]["document"] and hits[0]["metadata"]["text_from"] == "ocr"
    res = runner.invoke(app, ["search", "painting the shelves", "--db", str(db), "-k", "40"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    # the page whose text layer matches ranks above the other page (the rendered page image weighs on both:
    # see the documents eval for text+image vs text-only page records)
    assert min(i for i, x in enumerate(lines) if "manual.pdf p.2" in x) < \
        min(i for i, x in enumerate(lines) if "manual.pdf p.1" in x)
