"""Composed image+text -> image retrieval on emoji skin tones (npm ``emoji-datasource-google`` +
``emojibase-data``): ``emoji-composed``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .base import DatasetError, EvalDataset, Pool, Subset, _content_tag, sample_indices


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
    from ...data.fetch import fetch_npm

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
