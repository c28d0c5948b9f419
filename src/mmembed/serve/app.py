"""The FastAPI app behind ``mmembed serve``: a REST API and a search page over one or more collections.

Every search goes through :func:`mmembed.pipeline.retrieve`, like the CLI and the LangChain/LlamaIndex adapters;
this module only turns HTTP into arguments (text, an uploaded image, a task) and hits into JSON with links.
What it adds is what a network service needs: limits on what a client may send (body size, pixels, k),
bytes-sniffed uploads, files served only from the collection's recorded roots, writes only with a token,
errors as short JSON (never a stack trace), a time limit per request, and security headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from ..errors import ImageLoadError, InputError, MMEmbedError, ModelLoadError, StoreConnectionError
from ..images import ImagePolicy
from ..inputs import image as image_part
from ..instructions import get_task, list_tasks
from ..pipeline import as_reranker, retrieve
from ..store import Hit, Store
from .thumbnails import THUMB_SIZES, FileRefused, ThumbnailCache, resolve_roots, servable_path
from .uploads import UnsupportedUpload, decode_data_uri, read_image_upload, to_png

logger = logging.getLogger("mmembed.serve")

STATIC_DIR = resources.files("mmembed.serve") / "static"
MAX_TEXT = 2000
LINK_TTL = 30.0  # seconds a search result's "is this image served" answer is reused
SNIPPET = 400

#: The page's three choices in plain words -> the generic task for each shape of query.
GOALS: dict[str, dict[str, str]] = {
    "images": {"text": "text->image", "image": "image->image", "image+text": "image+text->image"},
    "text": {"text": "text->text", "image": "image->text", "image+text": "image+text->text"},
    "edit": {"image+text": "image+text->image"},
}
GOAL_LABELS = {
    "images": "find images",
    "text": "find text",
    "edit": "images like this one, changed by my words",
}


@dataclass
class ServeConfig:
    """Limits and switches of one server (the CLI's options)."""

    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    timeout: float = 60.0
    max_k: int = 100
    max_fetch_k: int = 500
    allow_writes: bool = False
    token: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    reranker: str | None = "default"
    upload_dir: Path | None = None
    thumbnail_cache_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.allow_writes and not self.token:
            raise InputError("writes need a bearer token: set MMEMBED_SERVE_TOKEN before starting with --allow-writes")
        if self.token is not None and len(self.token) < 16:
            raise InputError("MMEMBED_SERVE_TOKEN is too short: use at least 16 characters "
                             "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if not self.timeout > 0:
            raise InputError(f"timeout must be positive, got {self.timeout}")


# ---- request / response models ----------------------------------------------------------------------------
class SearchRequest(BaseModel):
    """A search. Give ``text``, ``image`` or both; steer it with ``goal``, ``task`` or ``instruction``."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, max_length=MAX_TEXT, description="Query text.")
    image: str | None = Field(None, description="Query image as a data: URI (JSON); in multipart, a file field.")
    goal: Literal["images", "text", "edit"] | None = Field(
        None, description="What to find, in plain words: 'images', 'text', or 'edit' (images like the given image, "
        "changed by the text). Picks the generic task for the query's shape; 'task' wins when both are given.")
    task: str | None = Field(None, description="A task name from GET /tasks, e.g. 'text->image'.")
    instruction: str | None = Field(None, max_length=MAX_TEXT, description="Free-text instruction (wins over task).")
    k: int = Field(12, ge=1, description="Results to return.")
    fetch_k: int | None = Field(None, ge=1, description="Candidates fetched before reranking (default max(3k, 20)).")
    rerank: bool = Field(False, description="Rerank the fetched candidates with the server's reranker.")
    filter: dict[str, Any] | None = Field(None, description="Chroma metadata filter, e.g. {\"category\": \"animals\"}.")
    collection: str | None = Field(None, description="Collection to search (default: the server's first).")


class ImageLink(BaseModel):
    url: str | None = Field(description="Thumbnail URL on this server, or null when the file is not served.")
    name: str = Field(description="File name of the stored image (no directories).")
    note: str | None = Field(None, description="Why the image is not served, when it is not.")


class SearchHit(BaseModel):
    rank: int
    id: str
    score: float | None = Field(description="First-stage cosine similarity.")
    rerank_score: float | None = Field(None, description="Reranker score, when reranked.")
    modality: str | None = None
    text: str | None = Field(None, description=f"The stored text, cut to {SNIPPET} characters.")
    caption: str | None = Field(None, description="Metadata 'caption', when present.")
    page: int | str | None = Field(None, description="Metadata 'page' (document chunks), when present.")
    metadata: dict[str, Any]
    images: list[ImageLink]
    item_url: str


class SearchResponse(BaseModel):
    collection: str
    task: str | None
    instruction: str | None
    reranked: bool
    took_ms: float
    hits: list[SearchHit]


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(..., min_length=1, max_length=1000,
                             description="Server-side files or folders, each under a root recorded on the collection.")
    collection: str | None = None


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


class _Error(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


# ---- middleware ---------------------------------------------------------------------------------------------
_CSP_PAGE = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
             "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# Swagger UI's HTML starts itself with an inline script
_CSP_DOCS = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
             "script-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


class LimitsMiddleware:
    """Body size cap (before and while reading), a time limit per request, and security headers."""

    def __init__(self, app: Any, *, max_body: int, timeout: float) -> None:
        self.app = app
        self.max_body = max_body
        self.timeout = timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                await _send_json(send, 400, {"error": "invalid Content-Length"})
                return
            if too_big:
                await _send_json(send, 413, {"error": f"request body is over the {self.max_body}-byte limit"})
                return
        started = False
        received = 0
        max_body = self.max_body
        docs = scope.get("path", "") == "/docs"

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    raise HTTPException(413, f"request body is over the {max_body}-byte limit")
            return message

        async def send_with_headers(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY"),
                         (b"content-security-policy", (_CSP_DOCS if docs else _CSP_PAGE).encode())]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        with anyio.move_on_after(self.timeout) as scope_:
            await self.app(scope, limited_receive, send_with_headers)
        if scope_.cancelled_caught and not started:
            await _send_json(send, 504, {"error": f"the request took longer than {self.timeout:g} s and was stopped"})


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": data})


# ---- the service --------------------------------------------------------------------------------------------
class Service:
    """The stores and the model, shared by every request.

    Every model call runs on one dedicated thread (``on_model_thread``): the encoder already uses every core for
    one query, tokenizers are not safe to call from several threads at once, and the first encode on a new
    thread pays a per-thread start-up of seconds in the text tower's native library (measured: 2-6 s on the
    shared 2-core machine), which a pool of short-lived worker threads would pay again and again.
    """

    def __init__(self, stores: Mapping[str, Store], config: ServeConfig) -> None:
        if not stores:
            raise InputError("serve needs at least one collection")
        self.stores = dict(stores)
        self.default = next(iter(self.stores))
        self.config = config
        self.policy = ImagePolicy(max_bytes=config.max_upload_bytes, max_pixels=config.max_pixels)
        self.thumbs = ThumbnailCache(ImagePolicy(max_pixels=config.max_pixels), config.thumbnail_cache_bytes)
        self.lock = threading.Lock()
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmembed-model")
        self._reranker: Any = None
        self._reranker_lock = threading.Lock()
        self._roots: dict[str, tuple[tuple[Path, ...], frozenset[Path]]] = {}
        self._links: dict[tuple[str, frozenset[Path]], tuple[float, str | None]] = {}

    def store(self, name: str | None) -> Store:
        key = name or self.default
        try:
            return self.stores[key]
        except KeyError:
            raise _Error(404, f"unknown collection {key!r}; this server serves: {', '.join(self.stores)}") from None

    def roots(self, store: Store) -> frozenset[Path]:
        """The store's recorded roots, resolved; cached until the recorded list changes."""
        raw = tuple(store.roots)
        cached = self._roots.get(store.collection_name)
        if cached is None or cached[0] != raw:
            cached = (raw, resolve_roots(list(raw)))
            self._roots[store.collection_name] = cached
        return cached[1]

    def reranker(self, store: Store) -> Any:
        if not self.config.reranker:
            raise InputError("this server was started without a reranker (--reranker none)")
        with self._reranker_lock:
            if self._reranker is None:
                self._reranker = as_reranker(self.config.reranker, store)
            return self._reranker

    async def on_model_thread(self, fn: Any) -> Any:
        """Run ``fn`` on the model thread; a request timeout stops waiting for it (it finishes on its own)."""
        return await asyncio.wrap_future(self.model_thread.submit(fn))

    def warm_up(self) -> None:
        """Load the encoder (and whatever it loads lazily, by embedding one query) and open every collection
        before the first request, so the first user does not wait for it."""
        first = next(iter(self.stores.values()))
        vector = first.encoder.encode_queries(["warm-up"], task="text->image")[0]
        for store in self.stores.values():
            if store.count():
                store.query_vector(vector, k=1)  # Chroma loads a collection's vector index on its first query
        if self.config.reranker and first.count():
            # the reranker imports and loads its own models on first use (tens of seconds on a busy machine):
            # pay it before the first request, not during it
            retrieve(first, "warm-up", k=1, fetch_k=2, task="text->image", reranker=self.reranker(first),
                     on_error="skip")

    # -- search --
    def resolve_task(self, req: SearchRequest, has_image: bool) -> str | None:
        shape = "image+text" if has_image and req.text else "image" if has_image else "text"
        if req.task:
            task = get_task(req.task)
            need_image, need_text = "image" in task.query_modality, "text" in task.query_modality
            if need_image and not has_image or need_text and not req.text:
                raise InputError(f"task {task.name!r} needs a query of {task.query_modality}, got {shape}")
            return task.name
        if req.goal:
            name = GOALS[req.goal].get(shape)
            if name is None:
                raise InputError(f"{GOAL_LABELS[req.goal]!r} needs an image and words describing the change")
            return name
        return None

    def search(self, req: SearchRequest, image: Any) -> SearchResponse:
        cfg = self.config
        if req.k > cfg.max_k:
            raise InputError(f"k is at most {cfg.max_k} on this server, got {req.k}")
        if req.fetch_k is not None and req.fetch_k > cfg.max_fetch_k:
            raise InputError(f"fetch_k is at most {cfg.max_fetch_k} on this server, got {req.fetch_k}")
        text = (req.text or "").strip() or None
        req.text = text
        if text is None and image is None:
            raise InputError("give a query text, an image, or both")
        store = self.store(req.collection)
        task = self.resolve_task(req, image is not None)
        parts: list[Any] = [image_part(image)] if image is not None else []
        if text:
            parts.append(text)
        start = time.perf_counter()
        reranker = self.reranker(store) if req.rerank else None
        with self.lock:
            # a malformed filter is an InputError from the store ("where filter ... is not valid"): a 400
            hits = retrieve(store, parts, k=req.k, fetch_k=req.fetch_k, task=task, instruction=req.instruction,
                            reranker=reranker, where=req.filter or None, on_error="skip")
        took = (time.perf_counter() - start) * 1000
        name = req.collection or self.default
        roots = self.roots(store)
        return SearchResponse(collection=name, task=task, instruction=req.instruction, reranked=reranker is not None,
                              took_ms=round(took, 2),
                              hits=[self.hit_json(h, i + 1, store, name, roots) for i, h in enumerate(hits)])

    def hit_json(self, hit: Hit, rank: int, store: Store, collection: str, roots: frozenset[Path]) -> SearchHit:
        meta = hit.metadata
        page = meta.get("page")
        caption = meta.get("caption")
        return SearchHit(
            rank=rank, id=hit.id, score=_finite(hit.score), rerank_score=_finite(hit.rerank_score),
            modality=hit.modality, text=(hit.document[:SNIPPET] if hit.document else None),
            caption=caption if isinstance(caption, str) else None,
            page=page if isinstance(page, (int, str)) and not isinstance(page, bool) else None,
            metadata=meta, images=self.image_links(hit, store, collection, roots),
            item_url=self.item_url(hit.id, collection))

    def item_url(self, item_id: str, collection: str, suffix: str = "") -> str:
        query = "" if collection == self.default else "?" + urllib.parse.urlencode({"collection": collection})
        return f"/items/{urllib.parse.quote(item_id, safe='')}{suffix}{query}"

    def image_links(self, hit: Hit, store: Store, collection: str,
                    roots: frozenset[Path] | None = None) -> list[ImageLink]:
        roots = self.roots(store) if roots is None else roots
        links = []
        for n, uri in enumerate(hit.uris):
            name = uri.rstrip("/").rsplit("/", 1)[-1]
            note = self._link_note(uri, roots)
            if note is not None:
                links.append(ImageLink(url=None, name=name, note=note))
                continue
            url = self.item_url(hit.id, collection, "/image")
            url += ("&" if "?" in url else "?") + f"n={n}"
            links.append(ImageLink(url=url, name=name))
        return links

    def _link_note(self, uri: str, roots: frozenset[Path]) -> str | None:
        """Why ``uri`` is not served (None: it is). Remembered for LINK_TTL seconds, because resolving every hit's
        path on every search costs more than the search; GET /items/{id}/image always checks afresh."""
        key = (uri, roots)
        now = time.monotonic()
        found = self._links.get(key)
        if found is not None and now - found[0] < LINK_TTL:
            return found[1]
        try:
            servable_path(uri, roots)
            note = None
        except FileRefused as exc:
            note = str(exc)
        if len(self._links) > 100_000:
            self._links.clear()
        self._links[key] = (now, note)
        return note

    def get_hit(self, item_id: str, collection: str | None) -> tuple[Hit, Store]:
        store = self.store(collection)
        found = store.get([item_id])
        if not found:
            raise _Error(404, f"no item {item_id!r} in collection {collection or self.default!r}")
        return found[0], store

    # -- writes --
    def check_token(self, request: Request) -> None:
        if not self.config.allow_writes:
            raise _Error(403, "this server is read-only: start it with --allow-writes and MMEMBED_SERVE_TOKEN set")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not given.strip():
            raise _Error(401, "writes need the header 'Authorization: Bearer <MMEMBED_SERVE_TOKEN>'", challenge)
        if not hmac.compare_digest(given.strip().encode(), (self.config.token or "").encode()):
            raise _Error(401, "wrong bearer token", challenge)

    def index_uploads(self, files: list[tuple[str, bytes]], captions: list[str], collection: str | None) -> dict[str, Any]:
        import hashlib

        store = self.store(collection)
        upload_dir = self.config.upload_dir
        if upload_dir is None:
            raise _Error(403, "this server has no upload directory (--upload-dir), so it cannot store uploaded files")
        if captions and len(captions) != len(files):
            raise InputError(f"got {len(captions)} captions for {len(files)} files (give one per file, or none)")
        items, ids, metas = [], [], []
        for i, (name, data) in enumerate(files):
            img = read_image_upload(data, name=repr(name), policy=self.policy)
            png = to_png(img)  # stored as decoded pixels: never the uploaded bytes (an SVG is never kept as SVG)
            digest = hashlib.sha256(png).hexdigest()
            upload_dir.mkdir(parents=True, exist_ok=True)
            path = upload_dir / f"{digest}.png"
            if not path.exists():
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(png)
                tmp.replace(path)
            caption = captions[i].strip() if captions else ""
            items.append({"image": path, "text": caption} if caption else {"image": path})
            ids.append(None)
            metas.append({"source": f"upload:{Path(name).name[:200]}", **({"caption": caption} if caption else {})})
        store.record_roots([upload_dir])
        with self.lock:
            res = store.add(items, metadatas=metas, on_error="skip")
        return {"added": res.added, "unchanged": res.unchanged,
                "skipped": [{"index": s.index, "reason": s.reason} for s in res.skipped], "count": store.count()}

    def index_paths(self, paths: list[str], collection: str | None) -> dict[str, Any]:
        """Index server-side image files or folders. Everything read must lie under the collection's roots
        (symlinks pointing out are skipped), so manifests, whose rows may name any file, are not taken here."""
        from ..sources import IMAGE_EXTENSIONS, SourceDoc, scan_folder

        store = self.store(collection)
        roots = [r.resolve() for r in store.roots]
        if not roots:
            raise _Error(403, "this collection records no roots, so no server path may be indexed through the API; "
                         "index its folder once with `mmembed index`")

        def inside(p: Path) -> bool:
            return any(p == r or r in p.parents for r in roots)

        docs: list[SourceDoc] = []
        for value in paths:
            try:
                target = Path(value).expanduser().resolve(strict=True)
            except (OSError, RuntimeError):
                raise InputError(f"path {value!r} does not exist on the server") from None
            if not inside(target):
                raise _Error(403, f"path {value!r} is outside the directories recorded for this collection; refused")
            if target.is_dir():
                docs += scan_folder(target)
            elif target.suffix.lower() in IMAGE_EXTENSIONS:
                caption_file = target.with_suffix(".txt")
                caption = caption_file.read_text(encoding="utf-8", errors="replace").strip() \
                    if caption_file.is_file() else ""
                docs.append(SourceDoc(item={"image": target, "text": caption} if caption else {"image": target},
                                      metadata={"source": target.name}, origin=str(target)))
            else:
                raise InputError(f"path {value!r} is neither a folder nor an image file")
        if not docs:
            raise InputError("no images found under the given paths")
        refused = [d for d in docs if not inside(Path(d.item["image"]).resolve())]
        docs = [d for d in docs if d not in refused]
        with self.lock:
            res = store.add([d.item for d in docs], metadatas=[d.metadata for d in docs], on_error="skip") \
                if docs else None
        skipped = [{"index": s.index, "reason": s.reason} for s in (res.skipped if res else [])]
        skipped += [{"name": Path(d.origin).name, "reason": "links outside the recorded roots; refused"}
                    for d in refused]
        return {"added": res.added if res else [], "unchanged": res.unchanged if res else [], "skipped": skipped,
                "count": store.count()}


async def _blocking(fn: Any, *args: Any) -> Any:
    """Run model/disk work in a worker thread that a timeout can abandon (the reply does not wait for it)."""
    return await anyio.to_thread.run_sync(lambda: fn(*args), abandon_on_cancel=True)


def _search_openapi() -> dict[str, Any]:
    schema = SearchRequest.model_json_schema()
    form = json.loads(json.dumps(schema))
    form["properties"]["image"] = {"type": "string", "format": "binary", "description": "Query image file."}
    form["properties"]["filter"] = {"type": "string", "description": "Metadata filter as a JSON object."}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema},
                                                          "multipart/form-data": {"schema": form}}}}


def _status_for(exc: MMEmbedError) -> int:
    if isinstance(exc, UnsupportedUpload):
        return 415
    if isinstance(exc, (StoreConnectionError, ModelLoadError)):
        return 503
    if isinstance(exc, ImageLoadError):
        return 422
    if isinstance(exc, FileRefused):
        return exc.status
    return 400


def create_app(stores: Mapping[str, Store] | Store, config: ServeConfig | None = None, *,
               warm_up: bool = True) -> FastAPI:
    """The app for ``stores`` (a Store, or collection name -> Store; the first is the default)."""
    if isinstance(stores, Store):
        stores = {stores.collection_name: stores}
    config = config or ServeConfig()
    service = Service(stores, config)
    if warm_up:
        service.model_thread.submit(service.warm_up).result()

    # OpenAPI docs at /docs with Swagger UI's files served by the app (fastapi-offline), never from a CDN
    from fastapi_offline import FastAPIOffline

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.model_thread.shutdown(wait=False, cancel_futures=True)

    app = FastAPIOffline(docs_url="/docs", redoc_url=None, static_url="/docs-assets", lifespan=lifespan,
                         favicon_url="/static/favicon.svg", title="mmembed", version=_version(),
                         description="Multimodal search over Chroma collections: text, images or both, steered "
                         "by a task. The search page is at /.")
    app.state.service = service

    @app.exception_handler(MMEmbedError)
    async def mmembed_error(request: Request, exc: MMEmbedError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=_status_for(exc))

    @app.exception_handler(_Error)
    async def app_error(request: Request, exc: _Error) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request", "details": _clean_errors(exc.errors())}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error (see the server log)"}, status_code=500)

    @app.get("/health", summary="Is the service up, and what does it serve")
    async def health() -> dict[str, Any]:
        def check() -> dict[str, Any]:
            return {name: {"count": s.count(), "roots_recorded": bool(s.roots)} for name, s in service.stores.items()}

        collections = await _blocking(check)
        enc = next(iter(service.stores.values())).encoder
        return {"status": "ok", "encoder": enc.name, "collections": collections, "default": service.default,
                "writes": config.allow_writes, "reranker": config.reranker}

    @app.get("/tasks", summary="Task names, and the page's plain-word goals")
    async def tasks() -> dict[str, Any]:
        return {
            "goals": [{"goal": g, "label": GOAL_LABELS[g], "tasks": GOALS[g]} for g in GOALS],
            "tasks": [{"name": t.name, "query_modality": t.query_modality, "target_modality": t.target_modality,
                       "instruction": t.instruction, "dataset": t.dataset} for t in list_tasks()],
            "collections": list(service.stores),
        }

    @app.post("/search", response_model=SearchResponse, openapi_extra=_search_openapi(),
              summary="Search with text and/or an image (JSON with a data: URI, or multipart with a file)")
    async def search(request: Request) -> Response:
        req, image_bytes, name = await _parse_search(request, config.max_upload_bytes)

        def work() -> SearchResponse:  # decoding and searching in one worker-thread trip
            image = None if image_bytes is None else read_image_upload(image_bytes, name=name, policy=service.policy)
            return service.search(req, image)

        result = await service.on_model_thread(work)
        # serialised once here (the response_model above documents it; FastAPI would validate it again)
        return Response(result.model_dump_json(), media_type="application/json")

    @app.get("/items/{item_id:path}/image", summary="Thumbnail of an item's stored image",
             responses={200: {"content": {"image/webp": {}, "image/png": {}}}})
    async def item_image(item_id: str, request: Request, n: int = 0, size: int = 256,
                         collection: str | None = None) -> Response:
        if size not in THUMB_SIZES:
            raise _Error(400, f"size must be one of {', '.join(map(str, THUMB_SIZES))}")
        hit, store = await _blocking(service.get_hit, item_id, collection)
        if not 0 <= n < len(hit.uris):
            raise _Error(404, f"item {item_id!r} has no image #{n}")
        path = servable_path(hit.uris[n], service.roots(store))
        thumb = await _blocking(service.thumbs.get, path, size)
        headers = {"Cache-Control": "private, max-age=3600", "ETag": thumb.etag}
        if request.headers.get("if-none-match") == thumb.etag:
            return Response(status_code=304, headers=headers)
        return Response(thumb.data, media_type=thumb.media_type, headers=headers)

    @app.get("/items/{item_id:path}", summary="One stored item")
    async def item(item_id: str, collection: str | None = None) -> dict[str, Any]:
        hit, store = await _blocking(service.get_hit, item_id, collection)
        name = collection or service.default
        return {"id": hit.id, "modality": hit.modality, "text": hit.document, "metadata": hit.metadata,
                "images": [link.model_dump() for link in service.image_links(hit, store, name)]}

    @app.post("/index", summary="Add uploaded images, or server paths under a recorded root (needs a token)")
    async def index(request: Request) -> dict[str, Any]:
        service.check_token(request)  # before the body is read
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_files=100, max_fields=200)
            files = [(f.filename or "upload", await f.read()) for f in form.getlist("files") if isinstance(f, UploadFile)]
            captions = [c for c in form.getlist("captions") if isinstance(c, str)]
            collection = form.get("collection")
            if not files:
                raise InputError("send the images as multipart form field 'files'")
            name = collection if isinstance(collection, str) else None
            return await service.on_model_thread(lambda: service.index_uploads(files, captions, name))
        if ctype.startswith("application/json"):
            try:
                body = IndexRequest.model_validate_json(await request.body())
            except ValidationError as exc:
                raise RequestValidationError(exc.errors()) from None
            return await service.on_model_thread(lambda: service.index_paths(body.paths, body.collection))
        raise _Error(415, "send multipart/form-data (field 'files') or JSON {\"paths\": [...]}")

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html")

    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], allow_credentials=False)
    app.add_middleware(LimitsMiddleware, max_body=config.max_upload_bytes, timeout=config.timeout)
    return app


async def _parse_search(request: Request, max_bytes: int) -> tuple[SearchRequest, bytes | None, str]:
    """A SearchRequest and the query image's bytes, from JSON (image as a data: URI) or a multipart form."""
    ctype = request.headers.get("content-type", "")
    fields: dict[str, Any]
    image_bytes: bytes | None = None
    name = "the uploaded image"
    if ctype.startswith("multipart/form-data") or ctype.startswith("application/x-www-form-urlencoded"):
        form = await request.form(max_files=1, max_fields=20)
        fields = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "image":
                    raise InputError(f"unexpected file field {key!r}; the query image goes in field 'image'")
                data = await value.read()
                if data:  # an empty file input in a form means "no image"
                    image_bytes, name = data, repr(value.filename or "upload")
            elif value != "":
                fields[key] = value
        if "filter" in fields:
            try:
                fields["filter"] = json.loads(fields["filter"])
            except ValueError:
                raise InputError("filter must be a JSON object, e.g. {\"category\": \"animals\"}") from None
    elif ctype.startswith("application/json"):
        try:
            fields = json.loads(await request.body())
        except ValueError:
            raise InputError("the request body is not valid JSON") from None
        if not isinstance(fields, dict):
            raise InputError("the request body must be a JSON object")
    else:
        raise _Error(415, "send JSON (image as a data: URI) or multipart/form-data (image as a file)")
    try:
        req = SearchRequest.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    if req.image:
        if image_bytes is not None:
            raise InputError("give the image once: as a file or as a data: URI, not both")
        image_bytes, name = decode_data_uri(req.image, max_bytes=max_bytes), "the data: URI image"
        req.image = None
    return req, image_bytes, name


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    return [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in errors]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mmembed")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        return "0"
