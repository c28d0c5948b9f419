"""Training pairs and candidate pools for ``mmembed train``: read, validate, coerce.

A pairs file is JSON Lines, one training example per line::

    {"query": "a red apple", "positive": {"image": "img/apple.png"}, "task": "text->image", "concept": "apple"}
    {"query": "Apfel", "positive": "red apple", "instruction": "Find text that means the same.", "id": "t42"}

* ``query`` / ``positive``: any input :func:`mmembed.coerce` accepts -- a string is text, ``{"image": path}``
  an image, ``{"text": ..., "image": ...}`` or a list of parts is interleaved. Relative image paths are
  relative to the file (like ``mmembed index`` manifests).
* ``task`` (a registered task name, see ``mmembed tasks``) or ``instruction`` (free text): what the query
  asks for. With ``task`` and no ``instruction``, training samples the task's paraphrases so the model
  follows any of them.
* ``id``: identifies the positive document. Pool candidates with the same id are the positive, never a
  negative. Default: the positive's content hash.
* ``concept``: what the positive shows. Candidates of the same concept *and the positive's modality* are
  false negatives (another drawing of the same apple) and are never used as negatives; candidates of the
  same concept in another modality (the caption of the apple when an image was asked for) are kept: they
  are exactly the negatives that teach the instruction.

A pool file (``--pool``) holds extra candidate documents, one per line: ``{"document": <input>, "id": ...,
"concept": ...}`` or the flat manifest form ``{"text": ..., "image": ..., "id": ..., "concept": ...}``.

Every error names the file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, MMEmbedError
from ..inputs import Interleaved, TextPart, coerce
from ..sources import iter_jsonl
from ..instructions import get_task

PAIR_KEYS = frozenset({"query", "positive", "task", "instruction", "id", "concept"})
POOL_META_KEYS = frozenset({"id", "concept"})
POOL_ITEM_KEYS = frozenset({"text", "image", "images"})


class TrainingDataError(InputError):
    """A pairs or pool file is malformed; the message names the file and line."""


@dataclass
class Pair:
    """One training example (already coerced). ``line`` is its 1-based line in the pairs file."""

    query: Interleaved
    positive: Interleaved
    task: str | None
    instruction: str | None
    id: str
    concept: str | None
    line: int
    source: str

    @property
    def where(self) -> str:
        return f"{self.source} line {self.line}"

    def instructions(self) -> tuple[str | None, ...]:
        """The phrasings training may use: the explicit instruction, else the task's paraphrases, else none."""
        if self.instruction is not None:
            return (self.instruction,)
        if self.task is not None:
            return get_task(self.task).instructions
        return (None,)


@dataclass
class PoolDoc:
    """One candidate document of the pool."""

    item: Interleaved
    id: str
    concept: str | None
    line: int
    source: str

    @property
    def where(self) -> str:
        return f"{self.source} line {self.line}" if self.line else self.source


def modality(item: Interleaved) -> str:
    """``text``, ``image`` or ``image+text``."""
    return item.modality


def item_key(item: Interleaved) -> str:
    """A cheap identity for deduplication: text as given, images by location (or bytes hash)."""
    h = hashlib.sha1()
    for part in item.parts:
        if isinstance(part, TextPart):
            h.update(b"T" + part.text.encode("utf-8", "surrogatepass") + b"\x00")
        elif part.uri is not None:
            h.update(b"U" + part.uri.encode("utf-8", "surrogatepass") + b"\x00")
        elif part.data is not None:
            h.update(b"B" + hashlib.sha1(part.data).digest())
        else:
            h.update(b"P" + str(id(part.pil)).encode())
    return h.hexdigest()


# ---- reading -------------------------------------------------------------------------------------------
def _rebase(value: Any, base: Path) -> Any:
    """Make relative image paths in ``value`` relative to ``base`` (the folder of the JSONL file)."""

    def fix(v: Any) -> Any:
        if isinstance(v, str) and not v.startswith(("http://", "https://", "data:")):
            p = Path(v).expanduser()
            return p if p.is_absolute() else base / p
        return v

    if isinstance(value, dict):
        out = dict(value)
        if out.get("type") == "image" and "image" in out:
            out["image"] = fix(out["image"])
        elif "type" not in out:
            if "image" in out:
                out["image"] = fix(out["image"])
            if isinstance(out.get("images"), list):
                out["images"] = [fix(v) for v in out["images"]]
        return out
    if isinstance(value, list):
        return [_rebase(v, base) if isinstance(v, dict) else v for v in value]
    return value


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    return iter_jsonl(path, error=TrainingDataError)


def _coerce_at(value: Any, base: Path, where: str) -> Interleaved:
    try:
        return coerce(_rebase(value, base), where=where)
    except MMEmbedError as exc:
        raise TrainingDataError(str(exc)) from None


def _opt_str(row: dict[str, Any], key: str, where: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key in ("id", "concept"):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise TrainingDataError(f"{where}: {key!r} must be a non-empty string, got {json.dumps(value)[:60]}")
    return value.strip()


def parse_pair(row: dict[str, Any], *, base: Path, source: str, line: int) -> Pair:
    """Validate and coerce one pairs-file row (``line`` names it in errors)."""
    where = f"{source} line {line}"
    unknown = sorted(set(row) - PAIR_KEYS)
    if unknown:
        raise TrainingDataError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(PAIR_KEYS)}")
    for key in ("query", "positive"):
        if row.get(key) is None:
            raise TrainingDataError(f"{where}: {key!r} is missing")
    query = _coerce_at(row["query"], base, f"{where} 'query'")
    positive = _coerce_at(row["positive"], base, f"{where} 'positive'")
    task = _opt_str(row, "task", where)
    if task is not None:
        try:
            get_task(task)
        except MMEmbedError as exc:
            raise TrainingDataError(f"{where}: {exc}") from None
    instruction = _opt_str(row, "instruction", where)
    rid = _opt_str(row, "id", where) or "pos:" + item_key(positive)
    return Pair(query, positive, task, instruction, rid, _opt_str(row, "concept", where), line, source)


def parse_pool_doc(row: dict[str, Any], *, base: Path, source: str, line: int) -> PoolDoc:
    where = f"{source} line {line}"
    if "document" in row:
        unknown = sorted(set(row) - POOL_META_KEYS - {"document"})
        if unknown:
            raise TrainingDataError(f"{where}: unknown key(s) {unknown} beside 'document'; allowed: id, concept")
        value: Any = row["document"]
        if value is None:
            raise TrainingDataError(f"{where}: 'document' is null")
    else:
        unknown = sorted(set(row) - POOL_META_KEYS - POOL_ITEM_KEYS)
        if unknown:
            raise TrainingDataError(f"{where}: unknown key(s) {unknown}; a pool line is {{\"document\": ...}} or "
                                    "has text/image/images plus optional id and concept")
        value = {k: v for k, v in row.items() if k in POOL_ITEM_KEYS}
        if not value:
            raise TrainingDataError(f"{where}: no document (give 'document', or 'text' and/or 'image')")
    item = _coerce_at(value, base, f"{where} document")
    did = _opt_str(row, "id", where) or "doc:" + item_key(item)
    return PoolDoc(item, did, _opt_str(row, "concept", where), line, source)


def read_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    """Every pair of a JSONL file; raises :class:`TrainingDataError` naming the line of the first bad row."""
    p = Path(path).expanduser()
    pairs = [parse_pair(row, base=p.parent, source=p.name, line=n) for n, row in _rows(p)]
    if len(pairs) < 2:
        raise TrainingDataError(f"{p.name}: need at least 2 training pairs, found {len(pairs)}")
    return pairs


def read_pool(path: str | os.PathLike[str]) -> list[PoolDoc]:
    """Every candidate document of a pool JSONL file."""
    p = Path(path).expanduser()
    docs = [parse_pool_doc(row, base=p.parent, source=p.name, line=n) for n, row in _rows(p)]
    if not docs:
        raise TrainingDataError(f"{p.name}: the pool file holds no documents")
    return docs


def file_digest(path: str | os.PathLike[str] | None) -> str | None:
    """SHA-256 of a file's bytes (what a resumed run checks it is training on the same data)."""
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


__all__ = ["Pair", "PoolDoc", "TrainingDataError", "file_digest", "item_key", "modality", "parse_pair",
           "parse_pool_doc", "read_pairs", "read_pool"]
