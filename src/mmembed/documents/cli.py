"""``mmembed index`` over folders mixing PDFs, HTML, Markdown, SVG and images: the per-format summary.

:mod:`mmembed.cli` hands a path here when it holds documents (or ``--ocr`` is given); folders of captioned
images and manifests keep their original path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .loader import FileEntry, LoadOptions, LoadReport, list_files


def wants_documents(path: Path, ocr: bool, recursive: bool = True) -> list[FileEntry] | None:
    """The files to index when ``path`` holds documents or OCR is asked for; None for the image/manifest path."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() in (".jsonl", ".ndjson", ".csv"):
        return None
    if not p.exists():
        return None
    report = LoadReport()
    entries = list_files(p, recursive=recursive, report=report)
    if ocr or any(e.format != "image" for e in entries):
        return entries
    return None


def run_index(entries: list[FileEntry], path: Path, store: Any, *, db: Path, server: bool, assets: Path | None,
              ocr: bool, dpi: float, granularity: str, max_pages: int, batch_size: int, strict: bool,
              replace_changed: bool, recursive: bool) -> None:
    """Index ``entries`` into ``store`` and print the per-format summary; raises typer.Exit on errors."""
    from ..errors import MMEmbedError
    from .assets import default_assets_dir
    from .indexing import index_paths

    needs_assets = any(e.format in ("pdf", "svg", "html", "markdown") for e in entries)
    if assets is None:
        if server and needs_assets:
            typer.secho("error: --assets DIR is required with a Chroma server: rendered pages and SVGs are "
                        "written there and the records point at them", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2)
        assets = default_assets_dir(db)
    encoder = store.encoder
    window = getattr(encoder, "max_text_tokens", None)
    options = LoadOptions(dpi=dpi, granularity=granularity, ocr=ocr, max_pages=max_pages,  # type: ignore[arg-type]
                          count_tokens=getattr(encoder, "count_tokens", None),
                          max_tokens=min(256, int(window)) if isinstance(window, int) and window >= 8 else 256,
                          image_policy=store.image_policy)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(entries), desc="indexing", unit="file", disable=None)
    try:
        result = index_paths(store, path, assets_dir=assets, options=options, recursive=recursive,
                             on_error="raise" if strict else "skip", replace=replace_changed, batch_size=batch_size,
                             entries=entries, progress=lambda e: bar.update(1))
    except MMEmbedError as exc:
        bar.close()
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        typer.echo("Documents finished before the error are kept whole; run the same command again to resume.",
                   err=True)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        bar.close()
        typer.secho("error: interrupted; documents finished are kept whole, run the same command again to resume",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(code=130) from None
    bar.close()
    report = result.report
    for line in report.lines():
        typer.echo(line)
    typer.echo(f"{result.summary()}; collection {store.collection_name!r} now holds {store.count()} records "
               f"(rendered images in {assets})")
    for s in report.skipped:
        typer.secho(f"  skipped {s.path}: {s.reason}", fg=typer.colors.YELLOW, err=True)
    for source, note in report.notes:
        typer.secho(f"  note {source}: {note}", err=True)


def hit_location(metadata: dict[str, Any]) -> str:
    """``source p.3`` or ``source § Heading`` for search output ("" for records without a page or heading)."""
    src = str(metadata.get("source", ""))
    if metadata.get("page") is not None:
        return f"{src} p.{metadata['page']}"
    if metadata.get("heading"):
        return f"{src} § {metadata['heading']}"
    if metadata.get("format") in ("html", "markdown", "svg"):
        return src
    return ""
