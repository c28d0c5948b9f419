"""Index folders mixing documents and images into a :class:`~mmembed.store.Store` (what ``mmembed index`` runs).

Images (with sidecar captions, OCR text with ``ocr=True``) are written in batches exactly as before; each
PDF/HTML/Markdown/SVG document goes through :meth:`Store.add_document`, so its chunks are written together,
an unchanged document is skipped without being read again, and ``replace=True`` replaces an edited
document's old chunks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import InputError
from .assets import Assets
from .loader import FileEntry, LoadOptions, LoadReport, count_chunk, list_files, load_file
from .model import DocumentError, SkippedFile


@dataclass
class IndexResult:
    report: LoadReport = field(default_factory=LoadReport)
    added: int = 0
    unchanged: int = 0
    replaced: int = 0

    def summary(self) -> str:
        text = f"{self.added} chunks added, {self.unchanged} already indexed, {len(self.report.skipped)} files skipped"
        return text + (f", {self.replaced} outdated records removed" if self.replaced else "")


def has_documents(entries: Iterable[FileEntry]) -> bool:
    return any(e.format != "image" for e in entries)


def index_paths(store: Any, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                assets_dir: str | os.PathLike[str], options: LoadOptions | None = None, recursive: bool = True,
                on_error: Literal["raise", "skip"] = "skip", replace: bool = False, batch_size: int = 32,
                write_batch: int | None = None, progress: Callable[[FileEntry], None] | None = None,
                entries: list[FileEntry] | None = None) -> IndexResult:
    """Index every supported file; record the roots and the assets directory on the collection first."""
    options = options or LoadOptions()
    out = IndexResult()
    report = out.report
    if entries is None:
        entries = list_files(paths, recursive=recursive, report=report)
    assets = Assets(assets_dir)
    roots = sorted({str(e.root.resolve()) for e in entries})
    store.record_roots([*roots, assets.root])
    images = [e for e in entries if e.format == "image"]
    docs = [e for e in entries if e.format != "image"]
    chunk = max(batch_size, 1) * 4
    for start in range(0, len(images), chunk):
        group = images[start:start + chunk]
        items, metas, kept = [], [], []
        for e in group:
            try:
                _, chunks = load_file(e, options=options, assets=assets, report=report)
                c = next(chunks)
            except DocumentError as exc:
                if on_error == "raise":
                    raise
                report.skipped.append(SkippedFile(str(e.path), e.format, str(exc)))
                continue
            items.append(c.item)
            metas.append(c.metadata)
            kept.append((e, c))
        res = store.add(items, metadatas=metas, on_error=on_error, batch_size=batch_size, show_progress=False,
                        replace_by="source" if replace else None)
        bad = {s.index for s in res.skipped}
        for s in res.skipped:
            e = kept[s.index][0]
            report.skipped.append(SkippedFile(str(e.path), e.format, s.reason))
        for i, (e, c) in enumerate(kept):
            if i not in bad:
                report.documents["image"] += 1
                count_chunk(report, "image", c)
        out.added += len(res.added)
        out.unchanged += len(res.unchanged)
        out.replaced += len(res.replaced)
        if progress:
            for e in group:
                progress(e)
    for e in docs:
        counts = LoadReport()
        try:
            doc, chunks = load_file(e, options=options, assets=assets, report=counts)

            def records(chunks=chunks):  # type: ignore[no-untyped-def]
                for c in chunks:
                    count_chunk(counts, e.format, c)
                    yield (c.id or None, c.item, c.metadata)

            res = store.add_document(records(), source=e.source, version=doc.sha256, batch_size=batch_size,
                                     replace=replace, write_batch=write_batch)
        except (DocumentError, InputError) as exc:
            if on_error == "raise":
                raise
            report.skipped.append(SkippedFile(str(e.path), e.format, str(exc)))
            if progress:
                progress(e)
            continue
        report.documents[e.format] += 1
        if not counts.chunks[e.format]:  # skipped as unchanged: its records stand for its chunks
            counts.chunks[e.format] = len(res.unchanged)
        for name in ("chunks", "pages", "images", "ocr"):
            getattr(report, name).update(getattr(counts, name))
        report.notes.extend((e.source, n) for n in doc.notes)
        out.added += len(res.added)
        out.unchanged += len(res.unchanged)
        out.replaced += len(res.replaced)
        if progress:
            progress(e)
    return out
