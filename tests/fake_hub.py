"""A small HTTP server on 127.0.0.1 that serves model repositories the way the Hugging Face hub does.

``huggingface_hub.snapshot_download`` talks to it through ``HF_ENDPOINT`` exactly as to the real hub, so the
real download code runs (repo info, tree listing, HEAD for metadata, GET for content, progress bars, the
cache layout with blobs/snapshots/refs, error headers). Only the endpoints that code calls are served:

* ``GET /api/models/{repo}[/revision/{rev}]``   -> ``{"id", "sha", "siblings"}`` (``X-Error-Code`` on errors)
* ``GET /api/models/{repo}/tree/{rev}``          -> the recursive file listing (``oid``, ``size``, ``lfs``)
* ``HEAD|GET /{repo}/resolve/{rev}/{path}``      -> ``X-Repo-Commit``, ``ETag``, ``Content-Length``, body

Repositories can be marked gated; a file can be served truncated (fewer bytes than the listing and HEAD
announce, as after a dropped connection that still closes cleanly). Every request is logged in
``FakeHub.requests``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> {path: content}
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> sha
    gated: bool = False


class FakeHub:
    LFS_SUFFIXES = (".safetensors", ".bin")

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.truncate: set[str] = set()  # "repo/path" served short
        self.requests: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- content -----------------------------------------------------------------------------------
    def add(self, repo_id: str, files: dict[str, bytes] | Path, *, ref: str = "main", gated: bool = False) -> str:
        """Publish ``files`` (a dict or a directory) as a new commit of ``repo_id`` on ``ref``; returns its sha."""
        if isinstance(files, Path):
            files = {p.relative_to(files).as_posix(): p.read_bytes() for p in sorted(files.rglob("*")) if p.is_file()}
        repo = self.repos.setdefault(repo_id, Repo())
        repo.gated = repo.gated or gated
        sha = hashlib.sha1(json.dumps([repo_id, ref, len(repo.commits), sorted(files)]).encode()).hexdigest()
        repo.commits[sha] = dict(files)
        repo.refs[ref] = sha
        return sha

    # ---- server ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

            def do_GET(self) -> None:
                hub._handle(self, head=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- request handling ------------------------------------------------------------------------------
    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes = b"", *, head: bool = False,
              headers: dict[str, str] | None = None, length: int | None = None) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, head: bool) -> None:
        body = json.dumps({"error": code}).encode()
        self._send(h, status, body, head=head, headers={"X-Error-Code": code, "Content-Type": "application/json"})

    def _lookup(self, h: BaseHTTPRequestHandler, repo_id: str, rev: str, head: bool) -> tuple[str, dict] | None:
        repo = self.repos.get(repo_id)
        if repo is None:  # the hub answers 401 for unknown *and* private repos
            self._error(h, 401, "RepoNotFound", head)
            return None
        if repo.gated:
            self._error(h, 403, "GatedRepo", head)
            return None
        sha = rev if rev in repo.commits else repo.refs.get(rev)
        if sha is None:
            self._error(h, 404, "RevisionNotFound", head)
            return None
        return sha, repo.commits[sha]

    def _handle(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        parsed = urlparse(h.path)
        path = unquote(parsed.path)
        self.requests.append(("HEAD" if head else "GET", path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = "/".join(parts[2:4])
            rest = parts[4:]
            if not rest or rest[0] == "revision":
                rev = "/".join(rest[1:]) if rest else "main"
                found = self._lookup(h, repo_id, rev, head)
                if found:
                    sha, files = found
                    body = {"id": repo_id, "sha": sha, "private": False, "gated": False,
                            "siblings": [{"rfilename": p} for p in sorted(files)]}
                    self._send(h, 200, json.dumps(body).encode(), head=head,
                               headers={"Content-Type": "application/json"})
                return
            if rest[0] == "tree":
                found = self._lookup(h, repo_id, "/".join(rest[1:]), head)
                if found:
                    _, files = found
                    listing = []
                    for p, data in sorted(files.items()):
                        entry = {"type": "file", "oid": _git_sha1(data), "size": len(data), "path": p}
                        if p.endswith(self.LFS_SUFFIXES):
                            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                            "pointerSize": 134}
                        listing.append(entry)
                    self._send(h, 200, json.dumps(listing).encode(), head=head,
                               headers={"Content-Type": "application/json"})
                return
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id = "/".join(parts[:2])
            found = self._lookup(h, repo_id, parts[3], head)
            if not found:
                return
            sha, files = found
            name = "/".join(parts[4:])
            if name not in files:
                self._error(h, 404, "EntryNotFound", head)
                return
            data = files[name]
            etag = hashlib.sha256(data).hexdigest() if name.endswith(self.LFS_SUFFIXES) else _git_sha1(data)
            headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream",
                       "Accept-Ranges": "bytes"}
            if head:
                self._send(h, 200, b"", head=True, headers=headers, length=len(data))
                return
            if f"{repo_id}/{name}" in self.truncate:
                data = data[: len(data) // 2]
            self._send(h, 200, data, headers=headers)
            return
        self._send(h, 404, b"not found")
