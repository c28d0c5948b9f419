"""The Tux Paint stamps evaluation set (Debian ``tuxpaint-stamps-default``, GPL-2).

Each stamp is a clip-art PNG with a ``.txt`` beside it: the first line is the English description, the
following ``lang.utf8=...`` lines are its translations (about 65 languages). That gives text->image,
image->text and cross-lingual text->image retrieval on one pool of ~785 images. It is *evaluation only*:
the default model never trains on it.

    from mmembed.data.tuxpaint import load_tuxpaint, export_folder
    stamps = load_tuxpaint()          # list[Stamp], fetched once into the mmembed cache
    export_folder("demo-stamps")     # PNGs with sidecar .txt captions, for the demo
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .fetch import fetch_deb

PACKAGE = "tuxpaint-stamps-default"
_STAMPS_SUBDIR = Path("usr/share/tuxpaint/stamps")
_LANG_LINE = re.compile(r"^([A-Za-z]{2,3}(?:_[A-Za-z]{2})?(?:@[A-Za-z]+)?)\.utf8=(.*)$")


@dataclass(frozen=True)
class Stamp:
    """One captioned stamp. ``id`` is its path under the stamps folder without suffix (``animals/birds/duck``)."""

    id: str
    image_path: Path
    caption: str
    translations: dict[str, str] = field(default_factory=dict)

    @property
    def category(self) -> str:
        """The top-level folder (``animals``, ``food``, ``vehicles``, ...)."""
        return self.id.split("/", 1)[0]

    def caption_in(self, lang: str) -> str | None:
        """The caption in ``lang`` (``"en"`` is the English caption; ``"pt_BR"``, ``"de"``, ...)."""
        return self.caption if lang == "en" else self.translations.get(lang)


def parse_description(text: str) -> tuple[str, dict[str, str]]:
    """Parse a stamp ``.txt``: returns ``(english, {lang: translation})``.

    The English caption is the first non-empty line that is not a ``lang.utf8=`` line. Raises ValueError
    if there is none.
    """
    english: str | None = None
    translations: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip().lstrip("\ufeff")
        if not line:
            continue
        m = _LANG_LINE.match(line)
        if m:
            value = m.group(2).strip()
            if value:
                translations.setdefault(m.group(1), value)
        elif english is None:
            english = line
    if english is None:
        raise ValueError("no English caption line")
    return english, translations


def stamps_root() -> Path:
    """Fetch the Debian package once (cached) and return its stamps folder."""
    return fetch_deb(PACKAGE) / "root" / _STAMPS_SUBDIR


def load_tuxpaint(root: str | os.PathLike[str] | None = None) -> list[Stamp]:
    """Every PNG stamp that has a caption, sorted by id.

    ``root`` defaults to the fetched package's stamps folder; give a folder of the same layout (PNG +
    ``.txt`` beside it) to use another copy. SVG-only stamps are left out so the pool is the same on every
    machine without an SVG renderer.
    """
    base = Path(root) if root is not None else stamps_root()
    if not base.is_dir():
        raise FileNotFoundError(f"Tux Paint stamps folder {base} does not exist")
    stamps: list[Stamp] = []
    for txt in sorted(base.rglob("*.txt")):
        png = txt.with_suffix(".png")
        if not png.is_file():
            continue
        try:
            caption, translations = parse_description(txt.read_text(encoding="utf-8", errors="replace"))
        except ValueError:
            continue
        stamp_id = txt.relative_to(base).with_suffix("").as_posix()
        stamps.append(Stamp(stamp_id, png, caption, translations))
    return stamps


def languages(stamps: list[Stamp], min_coverage: float = 0.9) -> list[str]:
    """Languages translated for at least ``min_coverage`` of ``stamps`` (for cross-lingual evaluation)."""
    counts: dict[str, int] = {}
    for s in stamps:
        for lang in s.translations:
            counts[lang] = counts.get(lang, 0) + 1
    return sorted(lang for lang, n in counts.items() if stamps and n / len(stamps) >= min_coverage)


def export_folder(dest: str | os.PathLike[str], stamps: list[Stamp] | None = None, *, lang: str = "en",
                  link: bool = False) -> Path:
    """Copy (or symlink) the stamps into ``dest`` as ``<id with / as __>.png`` with a sidecar ``.txt``.

    The sidecar holds the caption in ``lang`` (English when that translation is missing). Returns ``dest``.
    """
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    for s in stamps if stamps is not None else load_tuxpaint():
        stem = s.id.replace("/", "__")
        target = out / f"{stem}.png"
        if target.exists() or target.is_symlink():
            target.unlink()
        if link:
            target.symlink_to(s.image_path.resolve())
        else:
            shutil.copyfile(s.image_path, target)
        (out / f"{stem}.txt").write_text((s.caption_in(lang) or s.caption) + "\n", encoding="utf-8")
    return out


__all__ = ["PACKAGE", "Stamp", "export_folder", "languages", "load_tuxpaint", "parse_description", "stamps_root"]
