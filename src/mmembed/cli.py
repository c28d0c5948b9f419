"""The ``mmembed`` command line: index a folder, search it, list task instructions (and eval/train).

Every command works on the embedded store by default (``--db``, a directory) or on a Chroma server
(``--url http://host:port`` or ``--host``/``--port``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="mmembed",
    help="Universal multimodal retrieval: index images and text, search with text, images or both, "
    "steered by a task instruction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOpt = Annotated[Path, typer.Option("--db", help="Embedded database directory.", envvar="MMEMBED_DB")]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
UrlOpt = Annotated[Optional[str], typer.Option("--url", help="Chroma server URL, e.g. http://127.0.0.1:8000.")]
HostOpt = Annotated[Optional[str], typer.Option("--host", help="Chroma server host (instead of --db).")]
PortOpt = Annotated[int, typer.Option("--port", help="Chroma server port.")]
EncoderOpt = Annotated[str, typer.Option("--encoder", "-e", help="Encoder name, model directory, or package.module:factory.")]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def open_store(db: Path, collection: str, url: str | None, host: str | None, port: int, encoder: str,
               **kwargs: object):  # type: ignore[no-untyped-def]
    """The store the options name; lookups pass ``create=False`` so a typo is reported, not created."""
    from .store import Store

    if url or host:
        return Store(encoder=encoder, collection=collection, url=url, host=host, port=port, **kwargs)  # type: ignore[arg-type]
    return Store(db, encoder=encoder, collection=collection, **kwargs)  # type: ignore[arg-type]


@app.command()
def index(
    path: Annotated[Path, typer.Argument(help="A folder of images (captions in sidecar .txt files), PDFs, HTML, Markdown "
                                         "and SVG files, one such file, or a .jsonl/.csv manifest.")],
    db: DbOpt = Path("mmembed_db"),
    collection: CollectionOpt = "mmembed",
    url: UrlOpt = None,
    host: HostOpt = None,
    port: PortOpt = 8000,
    encoder: EncoderOpt = "default",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 32,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first unreadable input instead of skipping it.")] = False,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive")] = True,
    replace_changed: Annotated[bool, typer.Option(
        "--replace-changed", help="A file whose image or caption changed since it was indexed replaces its old "
        "record (matched by its 'source' path), instead of leaving it beside the new one.")] = False,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", help="Index on Ray Data: 'auto' (RAY_ADDRESS, else a cluster running here, else start a local "
        "one) or a cluster address. Needs --url and `pip install 'mmembed[ray]'`; see docs/scale-out.md.")] = None,
    ray_actors: Annotated[Optional[int], typer.Option("--ray-actors", min=1, help="Encoder actors (default: one per GPU asked for, else one per two CPUs).")] = None,
    ray_cpus: Annotated[Optional[float], typer.Option("--ray-cpus-per-actor", min=0.01, help="CPUs each encoder actor reserves (fractions allowed).")] = None,
    ray_gpus: Annotated[float, typer.Option("--ray-gpus-per-actor", min=0, help="GPUs each encoder actor reserves.")] = 0.0,
    ocr: Annotated[bool, typer.Option("--ocr", help="Also OCR standalone images (~1.5 s each); PDF pages without "
                                      "a text layer are always OCRed.")] = False,
    assets: Annotated[Optional[Path], typer.Option("--assets", help="Directory for rendered PDF pages and SVGs "
                                                   "(default: DB_assets beside --db; required with a server).")] = None,
    dpi: Annotated[float, typer.Option("--dpi", min=10, max=600, help="PDF page render resolution.")] = 100.0,
    granularity: Annotated[str, typer.Option("--granularity", help="PDF records: 'page' (page image + text) or "
                                             "'block' (text chunks with the page's figures).")] = "page",
    max_pages: Annotated[int, typer.Option("--max-pages", min=1, help="Refuse PDFs with more pages.")] = 2000,
) -> None:
    """Index a folder (images, PDFs, HTML, Markdown, SVG), one document, or a manifest. Re-running is cheap.

    Records are written chunk by chunk, so an interrupted run keeps what it finished and a re-run resumes.
    Records are keyed by content, so an edited file adds a new record; --replace-changed removes the old one
    once the new one is written.
    """
    if ray is not None:
        from .scale.cli import index_on_ray

        return index_on_ray(path, ray_address=ray, url=url, host=host, port=port, collection=collection,
                            encoder=encoder, batch_size=batch_size, strict=strict, recursive=recursive,
                            replace_changed=replace_changed, actors=ray_actors, cpus_per_actor=ray_cpus,
                            gpus_per_actor=ray_gpus)

    from .errors import MMEmbedError
    from .sources import read_source
    from .store import AddResult

    total = AddResult()
    docs: list = []  # type: ignore[type-arg]

    def report_skipped() -> None:
        for s in total.skipped:
            typer.secho(f"  skipped {docs[s.index].origin}: {s.cause}", fg=typer.colors.YELLOW, err=True)

    def stopped(message: str, code: int) -> None:
        done = len(total.added) + len(total.unchanged) + len(total.skipped)
        if done:
            typer.echo(f"stopped after {done} of {len(docs)} inputs: {total.summary()}. Finished records are "
                       "kept; run the same command again to resume.", err=True)
            report_skipped()
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=code)

    from .store import skip_logger

    skip_logger.disabled = True  # each skip is reported once, by report_skipped(), not also by the store's log
    try:
        from .documents.cli import run_index, wants_documents

        entries = wants_documents(path, ocr, recursive)
        if entries is not None:  # PDFs, HTML, Markdown, SVG or --ocr: the documents path (per-format summary)
            store = open_store(db, collection, url, host, port, encoder)
            run_index(entries, path, store, db=db, server=bool(url or host), assets=assets, ocr=ocr, dpi=dpi,
                      granularity=granularity, max_pages=max_pages, batch_size=batch_size, strict=strict,
                      replace_changed=replace_changed, recursive=recursive)
            return
        docs = read_source(path, recursive=recursive)
        if not docs:
            _fail(f"no images or rows found in {path}")
        store = open_store(db, collection, url, host, port, encoder)
        store.record_roots([path])
        chunk = batch_size * 4
        from .progress import progress

        with progress(len(docs), "indexing", "doc") as bar:
            for start in range(0, len(docs), chunk):
                part = docs[start : start + chunk]
                res = store.add([d.item for d in part], ids=[d.id for d in part] if any(d.id for d in part) else None,
                                metadatas=[d.metadata for d in part], on_error="raise" if strict else "skip",
                                batch_size=batch_size, show_progress=False,
                                replace_by="source" if replace_changed else None)
                for s in res.skipped:
                    s.index += start
                total.merge(res)
                bar.update(len(part))
        count = store.count()
    except MMEmbedError as exc:
        stopped(str(exc), 2)
        return
    except KeyboardInterrupt:
        stopped("interrupted", 130)
        return
    finally:
        skip_logger.disabled = False
    typer.echo(f"{total.summary()}; collection {collection!r} now holds {count} documents")
    report_skipped()


@app.command()
def search(
    query: Annotated[Optional[str], typer.Argument(help="Query text (optional when --image is given).")] = None,
    image: Annotated[Optional[list[str]], typer.Option("--image", "-i", help="Query image path (repeatable).")] = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Number of results.")] = 10,
    task: Annotated[Optional[str], typer.Option(
        "--task", "-t", help="Task name from `mmembed tasks`, in its shell-safe form: text-to-image, "
        "image-to-text, image+text-to-image, ... (text->image works only quoted).")] = None,
    instruction: Annotated[Optional[str], typer.Option("--instruction", help="Free-text task instruction.")] = None,
    reranker: Annotated[Optional[str], typer.Option(
        "--reranker", "-r", help="Rerank with 'default' or a reranker path (as `mmembed eval --reranker`).")] = None,
    rerank: Annotated[Optional[str], typer.Option("--rerank", hidden=True,
                                                  help="Deprecated spelling of --reranker.")] = None,
    fetch_k: Annotated[Optional[int], typer.Option("--fetch-k", min=1, help="Candidates fetched before reranking.")] = None,
    db: DbOpt = Path("mmembed_db"),
    collection: CollectionOpt = "mmembed",
    url: UrlOpt = None,
    host: HostOpt = None,
    port: PortOpt = 8000,
    encoder: EncoderOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Search with text, an image, or both (image first, then text)."""
    from .errors import MMEmbedError

    parts: list[object] = [{"type": "image", "image": p} for p in (image or [])]
    if query:
        parts.append(query)
    if not parts:
        _fail("give a query text, --image, or both")
    if rerank is not None:
        typer.secho("note: --rerank is deprecated; use --reranker (the name `mmembed eval` uses)",
                    fg=typer.colors.YELLOW, err=True)
        if reranker is not None and reranker != rerank:
            _fail(f"--reranker {reranker!r} and --rerank {rerank!r} disagree; give --reranker only")
        reranker = rerank
    try:
        store = open_store(db, collection, url, host, port, encoder, create=False)
        if not store.count():
            _fail(f"collection {collection!r} is empty: run `mmembed index PATH` first")
        from .pipeline import retrieve

        hits = retrieve(store, parts, k=k, fetch_k=fetch_k, task=task, instruction=instruction,
                        reranker=reranker)
    except MMEmbedError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps([{"id": h.id, "score": h.score, "rerank_score": h.rerank_score,
                                "document": h.document, "uris": h.uris, "metadata": h.metadata} for h in hits],
                              indent=2))
        return
    for rank, h in enumerate(hits, start=1):
        score = f"{h.score:.3f}" + (f" rerank {h.rerank_score:.3f}" if h.rerank_score is not None else "")
        from .documents.cli import hit_location

        where = hit_location(h.metadata) or (h.uris[0] if h.uris else h.id[:12])
        text = (h.document or "").replace("\n", " ")
        typer.echo(f"{rank:>3}. {score}  {where}  {text[:80]}")


@app.command()
def tasks(
    generic: Annotated[bool, typer.Option("--generic", help="Only the generic tasks (hide M-BEIR ones).")] = False,
) -> None:
    """List the task names usable with --task (shell-safe: text-to-image, ...) and their instructions."""
    from .instructions import list_tasks

    for t in list_tasks():
        if generic and t.dataset:
            continue
        typer.echo(f"{t.alias:<46} {t.instruction}")
    typer.echo("\nEach name also works as written with '->' (text->image), but only quoted in a shell: an "
               "unquoted '>' redirects output to a file.")


@app.command()
def info(
    db: DbOpt = Path("mmembed_db"),
    collection: CollectionOpt = "mmembed",
    url: UrlOpt = None,
    host: HostOpt = None,
    port: PortOpt = 8000,
    encoder: EncoderOpt = "default",
) -> None:
    """Show the encoder and the collection's size."""
    from .errors import MMEmbedError

    try:
        store = open_store(db, collection, url, host, port, encoder, create=False)
        typer.echo(json.dumps({"encoder": store.encoder.info(), "collection": collection, "count": store.count()}))
    except MMEmbedError as exc:
        _fail(str(exc))


def _register_optional_commands() -> None:
    """Commands that live beside their subsystems (eval, train) register themselves here."""
    import importlib

    for module in ("mmembed.demo", "mmembed.eval.cli", "mmembed.train.cli", "mmembed.models_cli",
                   "mmembed.serve.cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not (exc.name and module.startswith(exc.name)):
                raise
            continue
        mod.register(app)


_register_optional_commands()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
