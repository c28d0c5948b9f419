"""``mmembed serve``: the search page and REST API over existing collections (FastAPI + uvicorn).

``--db``/``--url``/``--host``/``--port`` name the Chroma store as in every other command; the service's own
address is ``--listen`` (127.0.0.1:8080 by default: only this machine can reach it, and 8000 is Chroma's port).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

TOKEN_ENV = "MMEMBED_SERVE_TOKEN"


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (127.0.0.1) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"--listen takes HOST:PORT, e.g. 127.0.0.1:8080, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def open_stores(db: Path, collections: list[str], url: str | None, host: str | None, port: int,
                encoder: object) -> dict:  # type: ignore[type-arg]
    """One Store per collection, sharing one encoder; a missing database or collection is an error (serving
    never creates one)."""
    from ..encoders.base import Encoder
    from ..encoders.registry import load_encoder
    from ..store import Store

    enc = encoder if isinstance(encoder, Encoder) else load_encoder(encoder)  # type: ignore[arg-type]
    stores = {}
    for name in collections:
        # create=False: a missing database or collection is a StoreNotFoundError listing what exists
        if url or host:
            store = Store(encoder=enc, collection=name, url=url, host=host, port=port, create=False)
        else:
            store = Store(db, encoder=enc, collection=name, create=False)
        stores[name] = store
    return stores


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        db: Annotated[Path, typer.Option("--db", help="Embedded database directory.", envvar="MMEMBED_DB")] = Path("mmembed_db"),
        collection: Annotated[Optional[list[str]], typer.Option(
            "--collection", "-c", help="Collection to serve (repeatable; the first is the default).")] = None,
        url: Annotated[Optional[str], typer.Option("--url", help="Chroma server URL, e.g. http://127.0.0.1:8000.")] = None,
        host: Annotated[Optional[str], typer.Option("--host", help="Chroma server host (instead of --db).")] = None,
        port: Annotated[int, typer.Option("--port", help="Chroma server port.")] = 8000,
        encoder: Annotated[str, typer.Option("--encoder", "-e", help="Encoder the collections were built with.")] = "default",
        listen: Annotated[str, typer.Option("--listen", help="Address of this service, HOST:PORT.")] = "127.0.0.1:8080",
        allow_writes: Annotated[bool, typer.Option(
            "--allow-writes", help=f"Enable POST /index (needs a bearer token in ${TOKEN_ENV}).")] = False,
        cors_origin: Annotated[Optional[list[str]], typer.Option(
            "--cors-origin", help="Allow browser pages from this origin to call the API (repeatable; off by default).")] = None,
        reranker: Annotated[str, typer.Option(
            "--reranker", help="Reranker used when a search asks for reranking ('none': no reranking, faster start).")] = "default",
        max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.01, help="Largest request body.")] = 10.0,
        timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds one request may take.")] = 60.0,
        upload_dir: Annotated[Optional[Path], typer.Option(
            "--upload-dir", help="Where images uploaded to POST /index are kept (default: DB/uploads).")] = None,
        threads: Annotated[Optional[int], typer.Option(
            "--threads", min=1, help="CPU threads for torch (1 is often faster on a busy machine).")] = None,
        log_level: Annotated[str, typer.Option("--log-level")] = "info",
    ) -> None:
        """Serve a search page and a REST API (POST /search, GET /items/ID, /docs) over indexed collections."""
        from ..errors import MMEmbedError

        try:
            import uvicorn

            from .app import ServeConfig, create_app
        except ModuleNotFoundError as exc:
            _fail(f"`mmembed serve` needs the serve extra ({exc.name} is missing): pip install 'mmembed[serve]'")
            return
        bind_host, bind_port = parse_listen(listen)
        if threads:
            import torch

            torch.set_num_threads(threads)
        token = os.environ.get(TOKEN_ENV) or None
        if upload_dir is None and not (url or host):
            upload_dir = db / "uploads"
        try:
            config = ServeConfig(max_upload_bytes=int(max_upload_mb * 1024 * 1024), timeout=timeout,
                                 allow_writes=allow_writes, token=token if allow_writes else None,
                                 cors_origins=list(cors_origin or []),
                                 reranker=None if reranker.lower() == "none" else reranker,
                                 upload_dir=upload_dir.resolve() if upload_dir else None)
            stores = open_stores(db, list(collection or ["mmembed"]), url, host, port, encoder)
            application = create_app(stores, config)
        except MMEmbedError as exc:
            _fail(str(exc))
            return
        if not _is_loopback(bind_host):
            typer.secho(f"warning: listening on {bind_host}: every machine that can reach it can search "
                        "(and see stored images)", fg=typer.colors.YELLOW, err=True)
        shown = f"[{bind_host}]" if ":" in bind_host else bind_host
        typer.echo(f"mmembed serve: {', '.join(stores)} on http://{shown}:{bind_port}/ "
                   f"(API docs at /docs; writes {'on' if allow_writes else 'off'})", err=True)
        uvicorn.run(application, host=bind_host, port=bind_port, log_level=log_level, timeout_keep_alive=5,
                    limit_concurrency=64, server_header=False)
