"""Python FAQ question -> answer (Debian ``python3.11-doc``): ``python-faq``."""

from __future__ import annotations

import html
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from .base import DatasetError, EvalDataset, Pool, Subset, _content_tag, normalize_caption, sample_indices


_FAQ_SUBDIR = Path("root/usr/share/doc/python3.11/html/faq")
_FAQ_PAGES = ("general", "programming", "design", "library", "extending", "windows", "gui", "installed")


class _FaqParser(HTMLParser):
    """Collects (question, answer text) from a Sphinx FAQ page: every ``<section>`` whose heading ends in
    ``?`` is a question; its answer is the section's own text (nested sections excluded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[dict[str, Any]] = []  # open sections: {"heading": [...], "body": [...]}
        self.in_heading = False
        self.skip = 0  # inside a "¶" permalink anchor
        self.pre = 0  # inside <pre>: keep line breaks (code)
        self.pairs: list[tuple[str, str, str]] = []  # (section id, question, answer)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.stack.append({"id": a.get("id") or "", "heading": [], "body": []})
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6") and self.stack:
            self.in_heading = True
        elif tag == "a" and "headerlink" in (a.get("class") or ""):
            self.skip += 1
        elif tag in ("p", "li", "pre", "div", "br", "dt", "dd", "tr") and self.stack:
            self.stack[-1]["body"].append("\n")
        if tag == "pre":
            self.pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section" and self.stack:
            sec = self.stack.pop()
            question = " ".join("".join(sec["heading"]).split())
            answer = re.sub(r"[ \t]*\n\s*", "\n", "".join(sec["body"])).strip()
            answer = re.sub(r"[ \t]+", " ", answer)
            if question.endswith("?") and answer:
                self.pairs.append((sec["id"], question, answer))
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.in_heading = False
        elif tag == "a" and self.skip:
            self.skip -= 1
        elif tag == "pre" and self.pre:
            self.pre -= 1

    def handle_data(self, data: str) -> None:
        if not self.stack or self.skip:
            return
        if self.in_heading:
            self.stack[-1]["heading"].append(data)
        else:
            self.stack[-1]["body"].append(data if self.pre else re.sub(r"\s+", " ", data))


def parse_faq_html(text: str) -> list[tuple[str, str, str]]:
    """``(section id, question, answer)`` for every question section of one Sphinx-rendered FAQ page."""
    parser = _FaqParser()
    parser.feed(text)
    parser.close()
    return parser.pairs


def python_faq(*, limit: int | None = None, seed: int = 0,
               root: str | os.PathLike[str] | None = None) -> EvalDataset:
    """Python FAQ question -> its answer (text -> text), from the HTML FAQ of Debian ``python3.11-doc``.

    The pool is every answer; TF-IDF and BM25 baselines are reported beside the encoder. ``root`` is a
    folder of FAQ ``*.html`` pages (default: the fetched package).
    """
    if root is None:
        from ...data.fetch import fetch_deb

        base = fetch_deb("python3.11-doc") / _FAQ_SUBDIR
    else:
        base = Path(root)
    pages = [base / f"{p}.html" for p in _FAQ_PAGES if (base / f"{p}.html").is_file()]
    pages += sorted(p for p in base.glob("*.html") if p not in pages and p.stem != "index")
    if not pages:
        raise DatasetError(f"no FAQ pages (*.html) in {base}")
    pairs: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for page in pages:
        for sid, question, answer in parse_faq_html(page.read_text(encoding="utf-8", errors="replace")):
            key = normalize_caption(question)
            if key in seen:  # a question asked twice keeps its first answer
                continue
            seen.add(key)
            pairs.append((f"{page.stem}#{sid}", html.unescape(question), html.unescape(answer)))
    if not pairs:
        raise DatasetError(f"no question sections found in the FAQ pages under {base}")
    chosen = [pairs[i] for i in sample_indices(len(pairs), limit, seed)]
    answers = [a for _, _, a in chosen]
    pool = Pool(key=f"python-faq-answers:{_content_tag([base, *answers])}", items=answers,
                ids=[i for i, _, _ in chosen], texts=answers)
    questions = [q for _, q, _ in chosen]
    sub = Subset("question->answer", questions, [(i,) for i in range(len(chosen))], pool, "question->passage",
                 query_ids=[i for i, _, _ in chosen], query_texts=list(questions))
    return EvalDataset("python-faq", [sub], source="Debian python3.11-doc (PSF license), FAQ pages",
                       description=f"{len(chosen)} question -> answer pairs", baselines=("tfidf", "bm25"))
