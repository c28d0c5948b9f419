"""Turn a folder of images (with sidecar captions) or a CSV/JSONL manifest into documents to index.

Shared by ``mmembed index``, the examples and the framework adapters, so "a folder of captioned images" means
the same thing everywhere:

* folder: every image file (by extension) becomes a document; ``cat.png`` gets its caption from ``cat.txt``
  beside it when present. Metadata records ``source`` (the path relative to the folder).
* JSONL manifest: one object per line with ``image`` (or ``images``) and/or ``text``, optional ``id`` and
  ``metadata`` (a dict); other keys become metadata. Relative image paths are relative to the manifest.
* CSV manifest: columns ``image``, ``text``, optional ``id``; other columns become metadata.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


@dataclass
class SourceDoc:
    """A document to index: an input for :func:`mmembed.coerce`, an optional id and metadata."""

    item: Any
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    origin: str = ""


def scan_folder(folder: str | Path, *, recursive: bool = True) -> list[SourceDoc]:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"{str(root)!r} is not a directory")
    pattern = root.rglob("*") if recursive else root.glob("*")
    docs: list[SourceDoc] = []
    for path in sorted(pattern):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or path.is_dir():
            continue
        rel = path.relative_to(root).as_posix()
        caption_file = path.with_suffix(".txt")
        caption = caption_file.read_text(encoding="utf-8", errors="replace").strip() if caption_file.is_file() else ""
        item: Any = {"image": path, "text": caption} if caption else {"image": path}
        docs.append(SourceDoc(item=item, metadata={"source": rel}, origin=str(path)))
    return docs


def _resolve(base: Path, value: Any) -> Any:
    if isinstance(value, str) and not value.startswith(("http://", "https://", "data:")):
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p
    return value


def iter_jsonl(path: str | Path, *, error: type[Exception] = InputError) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines file; a missing file, a line that is
    not JSON or not an object raises ``error`` naming the file and line. The one reader behind manifests,
    training pairs and M-BEIR files."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{p} does not exist or is not a file")
    with p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{p.name} line {n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise error(f"{p.name} line {n}: each line must be a JSON object, got {type(row).__name__}")
            yield n, row


def read_jsonl(path: str | Path) -> list[SourceDoc]:
    manifest = Path(path)
    return [_row_doc(row, manifest.parent, f"{manifest.name}:{n}") for n, row in iter_jsonl(manifest)]


def read_csv(path: str | Path) -> list[SourceDoc]:
    manifest = Path(path)
    with manifest.open(encoding="utf-8", newline="") as fh:
        return [_row_doc({k: v for k, v in row.items() if v not in (None, "")}, manifest.parent,
                         f"{manifest.name}:{i}") for i, row in enumerate(csv.DictReader(fh), start=2)]


def _row_doc(row: dict[str, Any], base: Path, origin: str) -> SourceDoc:
    row = dict(row)
    rid = row.pop("id", None)
    meta = dict(row.pop("metadata", None) or {})
    item: dict[str, Any] = {}
    if row.get("image"):
        item["image"] = _resolve(base, row.pop("image"))
    else:
        row.pop("image", None)
    if row.get("images"):
        imgs = row.pop("images")
        item["images"] = [_resolve(base, v) for v in (imgs if isinstance(imgs, list) else [imgs])]
    if row.get("text") is not None:
        item["text"] = row.pop("text")
    meta.update(row)
    if not item:
        raise InputError(f"{origin}: row has no 'image', 'images' or 'text'")
    return SourceDoc(item=item, id=str(rid) if rid is not None else None, metadata=meta, origin=origin)


def read_source(path: str | Path, *, recursive: bool = True) -> list[SourceDoc]:
    """A folder, a ``.jsonl`` or a ``.csv`` manifest."""
    p = Path(path).expanduser()
    if p.is_dir():
        return scan_folder(p, recursive=recursive)
    if not p.exists():
        raise InputError(f"{str(p)!r} does not exist")
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        return read_jsonl(p)
    if p.suffix.lower() == ".csv":
        return read_csv(p)
    raise InputError(f"{str(p)!r}: expected a folder of images, a .jsonl or a .csv manifest")


def iter_chunks(docs: list[SourceDoc], size: int) -> Iterator[list[SourceDoc]]:
    for i in range(0, len(docs), size):
        yield docs[i : i + size]
