"""Getting a chromadb client, and turning its transport failures into mmembed errors.

One concern: where the database lives (a directory, or a Chroma server at ``host:port``/``url``), how to
reach it (a heartbeat probe, a per-request timeout chromadb does not set itself) and what to say when it
cannot be reached or does not exist. :mod:`mmembed.store` builds on it and holds no transport code.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import InputError, MMEmbedError, StoreConnectionError, StoreNotFoundError, describe

DEFAULT_PATH = "mmembed_db"

#: Seconds a Chroma server may take to answer one request before the store gives up (chromadb's own HTTP
#: client waits forever, so a hung server would block every caller).
DEFAULT_SERVER_TIMEOUT = 120.0

#: The file chromadb's embedded (persistent) client keeps in its directory; its absence means "no database".
_SQLITE_FILE = "chroma.sqlite3"

Address = tuple[str, int, bool]  # (host, port, https)


def is_transport_error(exc: BaseException) -> bool:
    """A network failure talking to a Chroma server (refused, reset, timed out), not a refusal by Chroma."""
    try:
        import httpx
    except ImportError:  # pragma: no cover - chromadb depends on httpx
        return False
    return isinstance(exc, httpx.TransportError)


def is_filter_error(exc: BaseException) -> bool:
    """Chroma's refusal of a malformed where filter (ValueError/TypeError from its validator, or its own
    error type from a server), as opposed to a transport failure."""
    try:
        from chromadb.errors import ChromaError
    except ImportError:  # pragma: no cover
        ChromaError = ()  # type: ignore[assignment,misc]  # noqa: N806
    return isinstance(exc, (ValueError, TypeError, ChromaError))


@contextmanager
def server_errors(server: str | None) -> Iterator[None]:
    """Name the server when it cannot be reached, instead of surfacing an httpx traceback."""
    try:
        yield
    except MMEmbedError:
        raise
    except Exception as exc:
        if server is not None and is_transport_error(exc):
            raise StoreConnectionError(
                f"cannot reach the Chroma server at {server} ({type(exc).__name__}: {exc}); "
                "is `chroma run` running there? Records written before the failure are kept."
            ) from exc
        raise


def server_address(host: str | None, port: int | None, url: str | None) -> Address | None:
    """``(host, port, https)`` of the Chroma server asked for, or ``None`` for the embedded database."""
    if url is not None:
        if not isinstance(url, str):
            raise InputError(f"url must be a string like http://127.0.0.1:8000, got {describe(url)}")
        parsed = urllib.parse.urlsplit(url)
        try:
            url_port = parsed.port
        except ValueError as exc:
            raise InputError(f"Chroma server URL {url!r} has an invalid port") from exc
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InputError(f"Chroma server URL must be http(s)://host:port, got {url!r}")
        https = parsed.scheme == "https"
        return parsed.hostname, url_port or (443 if https else 8000), https
    if host is not None:
        if not isinstance(host, str) or not host:
            raise InputError(f"host must be a host name, got {describe(host)}")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise InputError(f"port must be an integer in 1..65535, got {describe(port)}")
        return host, port or 8000, False
    return None


def server_url(address: Address) -> str:
    return f"{'https' if address[2] else 'http'}://{address[0]}:{address[1]}"


def probe(address: Address, headers: Mapping[str, str] | None, timeout: float) -> None:
    """Fail fast on a server that accepts connections but does not answer. Refused connections are left to
    chromadb's client, whose error is reported by :func:`connect`."""
    import httpx

    url = server_url(address)
    try:
        httpx.get(f"{url}/api/v2/heartbeat", headers=dict(headers or {}), timeout=timeout)
    except httpx.TimeoutException as exc:
        raise StoreConnectionError(
            f"the Chroma server at {url} did not answer within {timeout:g} s ({type(exc).__name__}); "
            "is it overloaded or stuck? (Store(timeout=...) sets the limit)") from exc
    except httpx.TransportError:
        pass


def set_timeout(client: Any, timeout: float) -> None:
    """Give chromadb's HTTP session a per-request timeout (it has none of its own). The session is a private
    attribute; tests/reliability/test_server_mode.py fails if a chromadb release moves it."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout)


def database_path(path: str | os.PathLike[str] | None) -> Path:
    """The embedded database directory: ``path``, else ``$MMEMBED_DB``, else ``./mmembed_db``."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise InputError(f"path must be a directory path, got {describe(path)}")
    return Path(path if path is not None else os.environ.get("MMEMBED_DB", DEFAULT_PATH)).expanduser()


def connect(path: str | os.PathLike[str] | None, address: Address | None, *,
            headers: Mapping[str, str] | None = None, timeout: float = DEFAULT_SERVER_TIMEOUT,
            create: bool = True) -> Any:
    """A chromadb client for the directory ``path`` (embedded) or the server at ``address``.

    ``create=False`` (lookups): a directory that holds no Chroma database raises :class:`StoreNotFoundError`
    instead of becoming a new, empty database.
    """
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if address is not None:
        host, port, ssl = address
        probe(address, headers, timeout)
        try:
            client = chromadb.HttpClient(host=host, port=port, ssl=ssl, headers=dict(headers or {}),
                                         settings=settings)
            set_timeout(client, timeout)
            return client
        except Exception as exc:  # chromadb re-raises a refused connection as ValueError("Could not connect...")
            if not (is_transport_error(exc) or is_transport_error(exc.__context__ or exc)):
                raise
            raise StoreConnectionError(
                f"cannot reach the Chroma server at {server_url(address)}: {exc} "
                f"(start one with `chroma run --path DIR --host {host} --port {port}`)"
            ) from exc
    target = database_path(path)
    if not create and not (target / _SQLITE_FILE).is_file():
        what = "does not exist" if not target.exists() else "holds no mmembed database"
        raise StoreNotFoundError(
            f"database {describe_path(target)} {what}; check --db / the path, or create it with "
            "`mmembed index PATH --db DIR`")
    if target.exists() and not target.is_dir():
        raise InputError(f"database path {describe_path(target)} is a file, not a directory")
    target.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(target), settings=settings)


def collection_names(client: Any) -> list[str]:
    """Names of the collections the client holds (chromadb >= 0.6 returns names, older releases objects)."""
    return sorted(getattr(c, "name", c) for c in client.list_collections())


def describe_path(path: str | os.PathLike[str]) -> str:
    from .errors import shorten

    return shorten(os.fspath(path))


__all__ = ["DEFAULT_PATH", "DEFAULT_SERVER_TIMEOUT", "collection_names", "connect", "database_path",
           "is_filter_error", "is_transport_error", "probe", "server_address", "server_errors", "server_url", "set_timeout"]
