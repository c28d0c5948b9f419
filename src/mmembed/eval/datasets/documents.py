"""Evaluation sets on real documents nobody here wrote: the Asymptote manual (Debian ``asymptote-doc``, LGPL),
shipped both as a 196-page PDF and as HTML pages with the rendered example figures.

* ``asymptote-figure-page``: a figure from the HTML manual (the image alone) -> the PDF page that prints it.
  Ground truth comes from the HTML text just before the figure: the PDF page whose text layer holds that
  passage (and the next page, where TeX may have pushed the figure). The queries hold no text at all, so no
  query is a substring of the indexed text. One subset per way of indexing the pages, same queries:
  page image + text layer (mmembed's default page record), page text alone (text-only baseline), page image
  alone. ``asymptote-figure-page-ocr``: the same queries against page image + OCR text (the path a scanned
  manual takes; OCR of each page is cached) beside page image + text layer.
* ``asymptote-title-figure``: a section title of the HTML manual -> the figures under it, indexed as images
  alone (the titles are not in the pool), beside a text-only baseline indexing each figure by its alt text.

``limit`` samples the figures (queries); the pool is then their pages plus distractor pages (3 per query),
so a CI slice renders and OCRs at most a few dozen pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import DatasetError, EvalDataset, Pool, Subset, _content_tag, sample_indices

_ASY = Path("root/usr/share/doc/asymptote")
_DPI = 60
_SNIPPET = 48


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def _asymptote_root(root: str | Path | None) -> Path:
    if root is not None:
        return Path(root)
    from ...data.fetch import fetch_deb

    return fetch_deb("asymptote-doc") / _ASY


@dataclass
class _HtmlFigure:
    image: Path
    before: str  # normalised text just before the figure on its HTML page
    heading: str
    alt: str


def _html_figures(html_dir: Path) -> list[_HtmlFigure]:
    """Every figure of the HTML manual with the text before it and its section heading (first use wins)."""
    from ...documents.chunking import Figure, Heading, Text
    from ...documents.html import decode_html, parse_html

    out: list[_HtmlFigure] = []
    seen: set[Path] = set()
    for page in sorted(html_dir.glob("*.html")):
        def resolve(src: str, alt: str, base: Path = page.parent) -> Figure | None:
            target = (base / src).resolve()
            return Figure(str(target), alt) if target.suffix.lower() == ".png" and target.is_file() else None

        text, _ = decode_html(page.read_bytes())
        blocks, title = parse_html(text, resolve)
        before, heading = "", title
        for b in blocks:
            if isinstance(b, Heading):
                heading = b.text
            elif isinstance(b, Text):
                before = (before + " " + b.text)[-400:]
            elif isinstance(b, Figure):
                path = Path(b.image)
                if path not in seen:
                    seen.add(path)
                    alt = re.sub(r"^\./", "", b.caption or "").replace("_", " ")
                    out.append(_HtmlFigure(path, _norm(before), re.sub(r"^[0-9.]+\s+", "", heading), alt))
                before = ""
    return out


class _PdfPages:
    """Text layers of every page (cheap) and, on demand, cached renders and OCR texts of single pages."""

    def __init__(self, pdf: Path, cache: Path) -> None:
        import pypdfium2 as pdfium

        self.path, self.cache = pdf, cache
        self.doc = pdfium.PdfDocument(str(pdf))
        self.texts = []
        for i in range(len(self.doc)):
            page = self.doc[i]
            tp = page.get_textpage()
            self.texts.append(tp.get_text_range().replace("\r\n", "\n").strip())
            tp.close()
            page.close()
        self.norm = [_norm(t) for t in self.texts]
        cache.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.texts)

    def image(self, i: int) -> Path:
        path = self.cache / f"page-{i + 1:04d}-{_DPI}dpi.png"
        if not path.exists():
            page = self.doc[i]
            bitmap = page.render(scale=_DPI / 72)
            tmp = path.with_suffix(".tmp.png")
            bitmap.to_pil().convert("RGB").save(tmp)
            tmp.replace(path)
            page.close()
        return path

    def ocr(self, i: int) -> str:
        path = self.cache / f"page-{i + 1:04d}-{_DPI}dpi.ocr.txt"
        if not path.exists():
            from PIL import Image

            from ...documents.ocr import ocr_text

            with Image.open(self.image(i)) as img:
                # OCR reads the page at twice the stored resolution (small type at 60 dpi is too blurred)
                big = img.convert("RGB").resize((img.width * 2, img.height * 2))
            path.write_text(ocr_text(big), encoding="utf-8")
        return path.read_text(encoding="utf-8")


def _figure_pages(figures: list[_HtmlFigure], pages: _PdfPages) -> list[tuple[_HtmlFigure, tuple[int, ...]]]:
    out = []
    for fig in figures:
        if len(fig.before) < _SNIPPET:
            continue
        snippet = fig.before[-_SNIPPET:]
        hits = [i for i, text in enumerate(pages.norm) if snippet in text]
        if len(hits) != 1:  # not found (split across pages) or ambiguous: no ground truth, left out
            continue
        p = hits[0]
        out.append((fig, (p, p + 1) if p + 1 < len(pages) else (p,)))
    return out


def asymptote_figure_page(*, limit: int | None = None, seed: int = 0, root: str | Path | None = None,
                          ocr: bool = False) -> EvalDataset:
    """Asymptote manual: HTML figure (image alone) -> the PDF page printing it; page image+text vs text only
    vs image only (``ocr=True``: page image + OCR text vs page image + text layer instead)."""
    base = _asymptote_root(root)
    from ...data.fetch import cache_dir

    pages = _PdfPages(base / "asymptote.pdf", cache_dir() / "eval" / "asymptote-pages")
    pairs = _figure_pages(_html_figures(base / "html"), pages)
    if not pairs:
        raise DatasetError(f"no figure of {base / 'html'} could be placed on a page of asymptote.pdf")
    chosen = [pairs[i] for i in sample_indices(len(pairs), limit, seed)]
    if limit is None:
        pool_pages = list(range(len(pages)))
    else:
        wanted = sorted({p for _, rel in chosen for p in rel})
        rng = np.random.default_rng(seed)
        others = [i for i in range(len(pages)) if i not in wanted]
        extra = rng.choice(len(others), size=min(len(others), 3 * len(chosen)), replace=False)
        pool_pages = sorted(wanted + [others[int(j)] for j in extra])
    where = {p: k for k, p in enumerate(pool_pages)}
    queries: list[Any] = [{"image": fig.image} for fig, _ in chosen]
    relevant = [tuple(where[p] for p in rel) for _, rel in chosen]
    ids = [f"p{p + 1}" for p in pool_pages]
    qids = [fig.image.name for fig, _ in chosen]
    images = [pages.image(p) for p in pool_pages]
    texts = [pages.texts[p] for p in pool_pages]
    tag = _content_tag([base, *pool_pages])
    pools = {"page image+text": Pool(f"asy-pages-mm:{tag}",
                                     [{"image": im, "text": t} for im, t in zip(images, texts)], ids)}
    if ocr:
        from tqdm.auto import tqdm

        ocr_texts = [pages.ocr(p) for p in tqdm(pool_pages, desc="OCR (cached)", unit="page", disable=None)]
        pools["page image+OCR text"] = Pool(f"asy-pages-ocr:{tag}",
                                            [{"image": im, "text": t} for im, t in zip(images, ocr_texts)], ids)
    else:
        pools["page text only"] = Pool(f"asy-pages-text:{tag}", list(texts), ids, texts=list(texts))
        pools["page image only"] = Pool(f"asy-pages-img:{tag}", [{"image": im} for im in images], ids)
    tasks = {"page image+text": "image->image+text", "page text only": "image->text",
             "page image only": "image->image", "page image+OCR text": "image->image+text"}
    subsets = [Subset(f"figure->page ({name})", queries, relevant, pool, tasks[name], query_ids=qids)
               for name, pool in pools.items()]
    return EvalDataset("asymptote-figure-page-ocr" if ocr else "asymptote-figure-page", subsets,
                       source="Debian asymptote-doc (LGPL-3+): asymptote.pdf and the HTML manual's figures",
                       description=f"{len(chosen)} figures -> {len(pool_pages)} PDF pages rendered at {_DPI} dpi")


def asymptote_title_figure(*, limit: int | None = None, seed: int = 0, root: str | Path | None = None
                           ) -> EvalDataset:
    """Asymptote manual: section title -> the figures under it (images alone), beside an alt-text baseline."""
    base = _asymptote_root(root)
    figures = _html_figures(base / "html")
    if not figures:
        raise DatasetError(f"no figures in {base / 'html'}")
    by_title: dict[str, list[int]] = {}
    for i, fig in enumerate(figures):
        if fig.heading.strip():
            by_title.setdefault(fig.heading.strip(), []).append(i)
    titles = sorted(by_title)
    chosen = [titles[i] for i in sample_indices(len(titles), limit, seed)]
    used = sorted({i for t in chosen for i in by_title[t]})
    where = {i: k for k, i in enumerate(used)}
    ids = [figures[i].image.name for i in used]
    tag = _content_tag([base, *ids])
    img_pool = Pool(f"asy-figs-img:{tag}", [{"image": figures[i].image} for i in used], ids)
    alts = [figures[i].alt or figures[i].image.stem for i in used]
    alt_pool = Pool(f"asy-figs-alt:{tag}", alts, ids, texts=alts)
    relevant = [tuple(where[i] for i in by_title[t]) for t in chosen]
    subs = [Subset("title->figure (image only)", list(chosen), relevant, img_pool, "text->image",
                   query_ids=list(chosen), query_texts=list(chosen)),
            Subset("title->figure (alt text only)", list(chosen), relevant, alt_pool, "text->text",
                   query_ids=list(chosen), query_texts=list(chosen))]
    return EvalDataset("asymptote-title-figure", subs, baselines=("bm25",),
                       source="Debian asymptote-doc (LGPL-3+): the HTML manual's section titles and figures",
                       description=f"{len(chosen)} section titles -> {len(used)} figures")


def asymptote_figure_page_ocr(*, limit: int | None = None, seed: int = 0, root: str | Path | None = None
                              ) -> EvalDataset:
    """The same figure -> page queries, pages indexed as image + OCR text vs image + text layer (OCR of every
    pool page, ~1.5 s each on a CPU, cached)."""
    return asymptote_figure_page(limit=limit, seed=seed, root=root, ocr=True)


DOCUMENT_DATASETS = {
    "asymptote-figure-page": asymptote_figure_page,
    "asymptote-figure-page-ocr": asymptote_figure_page_ocr,
    "asymptote-title-figure": asymptote_title_figure,
}
