"""Open Clip Art Library drawings (Debian ``openclipart-svg``, public domain) as training and development data.

Each SVG carries its title and keywords in its RDF metadata (``<dc:title>Pop Can</dc:title>``,
``<dc:subject>`` keywords), so the library gives captioned clip-art: the drawing style of the Tux Paint stamps
that the default model is evaluated on, which the emoji sets do not have.

Two rules keep the evaluation honest:

* **No Tux Paint drawing is trained on.** Many Tux Paint stamps were drawn for, or taken from, the Open Clip
  Art Library. :func:`tuxpaint_near_duplicates` compares every rendered drawing with every rendered stamp
  (colour 32 x 32 thumbnails of the content box, normalised correlation, mirrored too) and drops any drawing above
  :data:`DUPLICATE_CORRELATION`; the count is recorded with the set.
* **A development slice is held back** (:func:`split`): the drawings of one concept in ten (by a hash of the
  normalised title) are never trained on. Levers are chosen on it (``mmembed eval openclipart-dev``), so Tux
  Paint, Fashion-MNIST and the emoji composed set stay evaluation-only.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .fetch import locked_fetch
from .render import IMAGE_SIZE, render_svg, to_rgb_on_white

PACKAGE = "openclipart-svg"
_SVG_SUBDIR = Path("root/usr/share/openclipart/svg")
#: Folders whose drawings are not depictions of things (flowchart shapes, jigsaw pieces, arrows, buttons,
#: logos, the "unsorted/duplicates" pile).
SKIP_FOLDERS: tuple[str, ...] = ("shapes", "buttons", "logos", "unsorted/duplicates", "computer/icons",
                                 "special/patterns", "special/gradients")
#: A title given to this many drawings is a collection's name ("Etiquette Icons", "Various Cliparts"), not a
#: caption: those drawings are captioned from their file name instead.
COLLECTION_TITLE_COUNT = 5
#: A drawing whose content-box thumbnail correlates this much with a Tux Paint stamp's is the same drawing.
DUPLICATE_CORRELATION = 0.85
#: ... or this much with a stamp whose caption shares a word with the drawing's title.
NAMED_DUPLICATE_CORRELATION = 0.6
#: One concept in ``DEV_MODULUS`` goes to the development slice.
DEV_MODULUS = 10

_GENERIC_TITLES = {"", "untitled", "open clip art project", "image", "drawing", "clipart", "clip art", "svg",
                   "layer 1", "new document"}


@dataclass(frozen=True)
class Drawing:
    """One captioned drawing: ``id`` is its path under the SVG folder without suffix."""

    id: str
    path: Path
    title: str
    keywords: tuple[str, ...]

    @property
    def concept(self) -> str:
        return concept_key(self.title)

    @property
    def dev(self) -> bool:
        """Whether this drawing belongs to the held-back development slice."""
        return is_dev_concept(self.concept)


def concept_key(title: str) -> str:
    """``"Pop Can 02"`` -> ``"pop can"``: lower case, digits and punctuation dropped."""
    return re.sub(r"\s+", " ", re.sub(r"[^a-z ]+", " ", title.lower())).strip()


def is_dev_concept(concept: str) -> bool:
    return int(hashlib.sha256(concept.encode()).hexdigest()[:8], 16) % DEV_MODULUS == 0


def clean_title(title: str) -> str:
    """Collapse spaces and underscores, drop trailing numbering and file suffixes."""
    t = re.sub(r"\.(svg|png)$", "", title.strip(), flags=re.I).replace("_", " ")
    t = re.sub(r"\s+\d+$", "", re.sub(r"\s+", " ", t)).strip(" -.,")
    return t


def parse_metadata(svg_text: str) -> tuple[str, tuple[str, ...]]:
    """``(title, keywords)`` from an Open Clip Art SVG's RDF metadata (the ``cc:Work``'s own ``dc:title``, not
    its publisher's or creator's, and its ``dc:subject`` keywords); ``("", ())`` when it has none."""
    work = re.search(r"<cc:Work\b[^>]*>(.*?)</cc:Work>", svg_text, flags=re.S)
    if not work:
        return "", ()
    body = re.sub(r"<cc:Agent\b.*?</cc:Agent>", "", work.group(1), flags=re.S)  # publisher, creator, rights
    m = re.search(r"<dc:title>([^<]*)</dc:title>", body)
    title = clean_title(html.unescape(m.group(1))) if m else ""
    subject = re.search(r"<dc:subject>(.*?)</dc:subject>", body, flags=re.S)
    words = re.findall(r"<rdf:li>([^<]*)</rdf:li>", subject.group(1)) if subject else []
    keywords = tuple(dict.fromkeys(html.unescape(w).strip().lower() for w in words if w.strip()))
    return title, keywords


def _usable_title(title: str) -> bool:
    t = title.lower()
    return t not in _GENERIC_TITLES and bool(re.search("[a-z]{3}", t)) and len(t) <= 60


def openclipart_root(root: str | Path | None = None) -> Path:
    """The SVG folder of the fetched package (fetched at the version pinned in the training-data lock)."""
    if root is not None:
        return Path(root)
    return locked_fetch("deb", PACKAGE, None) / _SVG_SUBDIR


def load_drawings(root: str | Path | None = None) -> list[Drawing]:
    """Every drawing with a usable title, in path order (skipped folders left out)."""
    base = openclipart_root(root)
    found: list[tuple[str, Path, str, tuple[str, ...]]] = []
    for path in sorted(base.rglob("*.svg")):
        rel = path.relative_to(base).with_suffix("").as_posix()
        if any(rel == f or rel.startswith(f + "/") for f in SKIP_FOLDERS):
            continue
        title, keywords = parse_metadata(path.read_text(encoding="utf-8", errors="replace"))
        found.append((rel, path, title, keywords))
    counts: dict[str, int] = {}
    for _, _, title, _ in found:
        counts[title.lower()] = counts.get(title.lower(), 0) + 1
    out: list[Drawing] = []
    for rel, path, title, keywords in found:
        if counts[title.lower()] >= COLLECTION_TITLE_COUNT or not _usable_title(title):
            title = stem_caption(path.stem)
        if _usable_title(title):
            out.append(Drawing(rel, path, title, keywords))
    return out


def stem_caption(stem: str) -> str:
    """A caption from a file name: ``"roller_blader_01"`` -> ``"roller blader"`` (words of letters only)."""
    words = [w for w in re.split(r"[^A-Za-z]+", stem) if w]
    return " ".join(words).lower() if words and len(words) <= 6 else ""


_UNITS = {"": 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}
_LENGTH = re.compile(r"^\s*([0-9.]+(?:e[-+]?\d+)?)\s*(px|pt|pc|mm|cm|in)?\s*$", re.I)


def normalise_root(svg: str) -> str:
    """Give the root ``<svg>`` a width and height in pixels and, when it has none, a ``viewBox`` equal to
    them (the same rendering: user units are pixels without a viewBox). Many of the library's older Inkscape
    files size the root in ``pt`` ("502.00000pt"), which the renderer refuses."""
    m = re.search(r"<svg\b[^>]*>", svg)
    if not m:
        return svg
    tag = m.group(0)
    dims = {}
    for attr in ("width", "height"):
        a = re.search(rf'\s{attr}="([^"]*)"', tag)
        lm = _LENGTH.match(a.group(1)) if a else None
        if lm:
            dims[attr] = float(lm.group(1)) * _UNITS[(lm.group(2) or "").lower()]
            tag = tag.replace(a.group(0), f' {attr}="{dims[attr]:.3f}"', 1)
    if "viewBox" not in tag and len(dims) == 2:
        tag = tag[:4] + f' viewBox="0 0 {dims["width"]:.3f} {dims["height"]:.3f}"' + tag[4:]
    return svg[:m.start()] + tag + svg[m.end():]


def render_drawing(path: Path, size: int) -> np.ndarray | None:
    """A drawing as ``size`` x ``size`` RGB on white, or None when the renderer refuses it."""
    try:
        return render_svg(normalise_root(path.read_text(encoding="utf-8", errors="replace")), size)
    except Exception:  # some drawings use features resvg rejects: leave them out
        return None


def _thumbs(images: np.ndarray) -> np.ndarray:
    """Colour 32 x 32 thumbnails of each drawing's content box (the non-white pixels, padded square, so the
    same drawing framed differently still matches), mean-centred, unit norm: ``(N, 32, 32, 3)``."""
    from PIL import Image

    rows = []
    for a in images:
        ink = np.flatnonzero((a.min(axis=2) < 245).any(axis=0)), np.flatnonzero((a.min(axis=2) < 245).any(axis=1))
        if len(ink[0]) and len(ink[1]):
            a = a[ink[1][0]:ink[1][-1] + 1, ink[0][0]:ink[0][-1] + 1]
        h, w = a.shape[:2]
        side = max(h, w)
        sq = np.full((side, side, 3), 255, dtype=np.uint8)
        sq[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = a
        g = np.asarray(Image.fromarray(sq).resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32)
        g = g - g.mean()
        rows.append(g / max(1e-6, float(np.linalg.norm(g))))
    return np.stack(rows)


_STOP = {"the", "and", "with", "for", "from", "its", "his", "her", "one", "two", "big", "small", "old", "new"}


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z]{3,}", text.lower()) if w not in _STOP}


def tuxpaint_near_duplicates(images: np.ndarray, stamp_images: np.ndarray, titles: list[str] | None = None,
                             stamp_captions: list[str] | None = None,
                             threshold: float = DUPLICATE_CORRELATION,
                             named_threshold: float = NAMED_DUPLICATE_CORRELATION) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``images`` (N, S, S, 3) the highest correlation with any stamp (or its mirror image), and
    whether it counts as the same drawing: at least ``threshold``, or at least ``named_threshold`` with a
    stamp whose caption shares a word with the drawing's title (a recoloured or redrawn copy of a stamp
    correlates less than an identical one; the word check keeps that looser rule from removing every round
    fruit). Errs on the side of leaving drawings out."""
    a = _thumbs(images).reshape(len(images), -1)
    s = _thumbs(stamp_images)
    n = len(stamp_images)
    s = np.concatenate([s, s[:, :, ::-1]]).reshape(2 * n, -1)  # and mirrored
    best = np.full(len(a), -1.0, dtype=np.float32)
    dup = np.zeros(len(a), dtype=bool)
    cap_words = [_words(c) for c in stamp_captions] if stamp_captions is not None else None
    for i in range(0, len(a), 512):
        sim = a[i:i + 512] @ s.T
        sim = np.maximum(sim[:, :n], sim[:, n:])
        best[i:i + 512] = sim.max(axis=1)
        dup[i:i + 512] = best[i:i + 512] >= threshold
        if titles is not None and cap_words is not None:
            for r, j in zip(*np.nonzero(sim >= named_threshold)):
                if not dup[i + r] and _words(titles[i + r]) & cap_words[j]:
                    dup[i + r] = True
    return best, dup


TRAINING_SOURCE = "Debian openclipart-svg (training slice)"


def render_openclipart(drawings: Sequence, pool: ProcessPoolExecutor | None = None) -> list[np.ndarray | None]:
    """Render Open Clip Art drawings at :data:`IMAGE_SIZE` (None where the renderer refuses one)."""
    from functools import partial

    fn = partial(render_drawing, size=IMAGE_SIZE)
    paths = [d.path for d in drawings]
    return list(pool.map(fn, paths, chunksize=32)) if pool is not None else [fn(p) for p in paths]


def tuxpaint_arrays(with_captions: bool = False) -> Any:
    """Every Tux Paint stamp rendered as the training images are (for near-duplicate exclusion only), and
    with ``with_captions`` their English captions too."""
    from PIL import Image

    from .tuxpaint import load_tuxpaint

    out, captions = [], []
    for st in load_tuxpaint():
        with Image.open(st.image_path) as im:
            out.append(to_rgb_on_white(im))
        captions.append(st.caption)
    return (np.stack(out), captions) if with_captions else np.stack(out)


def without_tuxpaint_duplicates(drawings: Sequence[Drawing], pool: ProcessPoolExecutor | None = None
                                ) -> tuple[list[tuple[Drawing, np.ndarray]], int, int]:
    """Render ``drawings`` and leave out the unrenderable ones and the near-duplicates of Tux Paint stamps:
    ``(kept (drawing, image) pairs, near-duplicates left out, unrenderable)``. The one rule for the training
    slice and the development set."""
    arrays = render_openclipart(drawings, pool)
    keep = [i for i, a in enumerate(arrays) if a is not None]
    stamps, captions = tuxpaint_arrays(with_captions=True)
    _, dup = tuxpaint_near_duplicates(np.stack([arrays[i] for i in keep]), stamps,
                                      [drawings[i].title for i in keep], captions)
    kept = [(drawings[i], arrays[i]) for i, is_dup in zip(keep, dup) if not is_dup]
    return kept, int(dup.sum()), len(arrays) - len(keep)


def training_items(pool: ProcessPoolExecutor, used: list[dict],
                   say: Callable[[str], None]) -> Iterator[tuple[np.ndarray, str, str]]:
    """``(image, caption, concept)`` of the training slice: no development concept, no Tux Paint
    near-duplicate (counts recorded in the package's entry of ``used``)."""
    root = locked_fetch("deb", PACKAGE, used) / _SVG_SUBDIR
    kept, n_dup, n_bad = without_tuxpaint_duplicates([d for d in load_drawings(root) if not d.dev], pool)
    rec = next((u for u in used if u["name"] == PACKAGE), None)
    if rec is not None:
        rec["excluded_tuxpaint_near_duplicates"] = n_dup
        rec["unrenderable"] = n_bad
    say(f"  openclipart: {n_dup} drawings left out as near-duplicates of Tux Paint stamps, {n_bad} unrenderable")
    for d, image in kept:
        yield image, d.title, "openclipart:" + d.concept


__all__ = ["DEV_MODULUS", "DUPLICATE_CORRELATION", "Drawing", "PACKAGE", "SKIP_FOLDERS", "TRAINING_SOURCE",
           "clean_title", "concept_key", "is_dev_concept", "load_drawings", "openclipart_root", "parse_metadata",
           "render_drawing", "render_openclipart", "training_items", "tuxpaint_arrays", "tuxpaint_near_duplicates",
           "without_tuxpaint_duplicates"]
