"""Remote images and stored URIs: a real HTTP server started by the test on 127.0.0.1.

Remote fetching is off by default; when on, only http(s), with a per-operation timeout, a total deadline, a
byte cap and a content-type check, and loopback/private/link-local hosts refused unless explicitly allowed
(the test server is on loopback, so it must be refused by default and reached only with the flag). URIs
read back from a collection cannot be used to escape ``ImagePolicy(root=...)``.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ToyEncoder, make_png
from mmembed import ImageLoadError, ImagePolicy, Interleaved, RemoteImageError, Reranker, Store, coerce
from mmembed.images import load_image
from mmembed.pipeline import retrieve

from .conftest import ChromaServer
from .test_hostile_inputs import png_bomb

REMOTE = ImagePolicy(allow_remote=True)
REMOTE_PRIVATE = ImagePolicy(allow_remote=True, allow_private_addresses=True, timeout=2.0, total_timeout=5.0)


def png(color: tuple[int, int, int] = (10, 200, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buf, "PNG")
    return buf.getvalue()


class ImageServer(BaseHTTPRequestHandler):
    """Routes that behave well and badly; every request is counted per path."""

    hits: Counter[str] = Counter()
    stop = threading.Event()
    PNG = png()

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def send(self, status: int, body: bytes, ctype: str | None = "image/png", length: int | None = None,
             extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: C901 - one route per hostile behaviour
        path = self.path.split("?", 1)[0]
        self.hits[path] += 1
        if path == "/green.png":
            self.send(200, self.PNG)
        elif path == "/page.html":
            self.send(200, b"<!doctype html><html><body>not an image</body></html>", "text/html; charset=utf-8")
        elif path == "/drawing.svg":
            self.send(200, b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml")
        elif path == "/untyped":
            self.send(200, self.PNG, ctype=None)
        elif path == "/lying-type.png":
            self.send(200, b"%PDF-1.4\n", "image/png")
        elif path == "/declared-big.png":
            self.send(200, b"", length=50_000_000)
        elif path == "/streamed-big.png":  # no Content-Length: the cap must hold while reading
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"\0" * 65536)
        elif path == "/bomb.png":
            self.send(200, png_bomb(16000, 16000))
        elif path == "/slow-headers.png":
            self.stop.wait(10)
            self.send(200, self.PNG)
        elif path == "/dribble.png":  # a byte every 0.2 s: never idle long enough for a per-read timeout
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(200):
                if self.stop.wait(0.2):
                    break
                self.wfile.write(b"\0")
                self.wfile.flush()
        elif path == "/to-file":
            self.send(302, b"", extra={"Location": "file:///etc/passwd"})
        elif path == "/loop":
            self.send(302, b"", extra={"Location": "/loop"})
        elif path == "/to-green":
            self.send(301, b"", extra={"Location": "/green.png"})
        else:
            self.send(404, b"missing", "text/plain")


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    ImageServer.hits.clear()
    ImageServer.stop.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageServer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        ImageServer.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# ---- off by default, and loopback refused unless allowed ------------------------------------------------------
def test_remote_images_are_off_by_default(image_server: str, tmp_path: Path) -> None:
    url = f"{image_server}/green.png"
    before = ImageServer.hits["/green.png"]
    with pytest.raises(RemoteImageError, match=r"green\.png.*remote images are off"):
        load_image(url)
    store = Store(tmp_path / "db", encoder=ToyEncoder())  # the encoder's policy is the default one
    res = store.add(["kept", {"image": url}], on_error="skip")
    assert len(res.added) == 1 and "remote images are off" in res.skipped[0].reason
    assert ImageServer.hits["/green.png"] == before  # no request was made


def test_loopback_server_is_refused_without_the_explicit_flag(image_server: str) -> None:
    before = sum(ImageServer.hits.values())
    for host in (image_server, image_server.replace("127.0.0.1", "localhost")):
        with pytest.raises(RemoteImageError, match=r"private/loopback address \(127\.0\.0\.1\)"):
            load_image(f"{host}/green.png", REMOTE)
    assert sum(ImageServer.hits.values()) == before  # refused before connecting
    loaded = load_image(f"{image_server}/green.png", REMOTE_PRIVATE)
    assert loaded.digest == hashlib.sha256(ImageServer.PNG).hexdigest()
    assert loaded.image.getpixel((3, 3)) == (10, 200, 10)


@pytest.mark.parametrize("host", [
    "127.0.0.2", "[::1]", "169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "0.0.0.0",
    "[::ffff:127.0.0.1]", "[::ffff:169.254.169.254]", "[fe80::1]", "[fc00::1]", "[2002:7f00:1::]",
    "[64:ff9b::a9fe:a9fe]", "2130706433", "0x7f.1", "127.1", "224.0.0.1",
])
def test_private_link_local_and_disguised_addresses_are_refused(host: str) -> None:
    with pytest.raises(RemoteImageError, match="private/loopback address"):
        load_image(f"http://{host}:9/x.png", REMOTE)


@pytest.mark.parametrize("url, pattern", [
    ("file:///etc/passwd", r"file:// scheme is not supported"),
    ("FILE:///etc/passwd", r"FILE:// scheme is not supported"),
    ("ftp://example.org/x.png", r"ftp:// scheme is not supported"),
    ("gopher://127.0.0.1:70/x", r"gopher:// scheme is not supported"),
    ("http:///x.png", r"only http\(s\) URLs with a host"),
])
def test_only_http_and_https_are_fetched(url: str, pattern: str) -> None:
    for policy in (REMOTE, REMOTE_PRIVATE):
        with pytest.raises(ImageLoadError, match=pattern):
            load_image(url, policy)
    with pytest.raises(ImageLoadError, match=pattern):
        coerce({"type": "image_url", "image_url": {"url": url}}).load_images(REMOTE_PRIVATE)


# ---- what a (reachable) server may send ---------------------------------------------------------------------------
@pytest.mark.parametrize("path, pattern", [
    ("/page.html", r"content type 'text/html', not an image type"),
    ("/drawing.svg", r"content type 'image/svg\+xml', not an image type"),
    ("/untyped", r"content type 'none', not an image type"),
    ("/lying-type.png", r"lying-type\.png.*PDF document"),
    ("/declared-big.png", r"50000000 bytes, over the cap"),
    ("/streamed-big.png", r"over the 1000000-byte cap"),
    ("/bomb.png", r"bomb\.png.*decompression bomb"),
    ("/nothing-here.png", r"HTTP 404"),
    ("/to-file", r"file:// scheme is not supported|only http\(s\)"),
    ("/loop", r"too many redirects"),
])
def test_bad_responses_are_refused_with_the_url_named(image_server: str, path: str, pattern: str) -> None:
    with pytest.raises(ImageLoadError, match=pattern) as info:
        load_image(f"{image_server}{path}", REMOTE_PRIVATE.with_(max_bytes=1_000_000))
    assert f"{image_server}{path}" in str(info.value)  # the URL the user gave is named


def test_redirect_to_an_image_is_followed(image_server: str) -> None:
    assert load_image(f"{image_server}/to-green", REMOTE_PRIVATE).digest == hashlib.sha256(ImageServer.PNG).hexdigest()


def test_a_silent_server_hits_the_read_timeout(image_server: str) -> None:
    start = time.monotonic()
    with pytest.raises(RemoteImageError, match=r"slow-headers\.png.*(timed out|took longer)"):
        load_image(f"{image_server}/slow-headers.png", REMOTE_PRIVATE.with_(timeout=0.5))
    assert time.monotonic() - start < 3


def test_a_dribbling_server_hits_the_total_deadline(image_server: str) -> None:
    start = time.monotonic()
    with pytest.raises(RemoteImageError, match=r"dribble\.png.*took longer than 1\.5 s"):
        load_image(f"{image_server}/dribble.png", REMOTE_PRIVATE.with_(timeout=1.0, total_timeout=1.5))
    assert time.monotonic() - start < 4


def test_store_indexes_an_allowed_url_and_keeps_it_as_the_uri(image_server: str, tmp_path: Path) -> None:
    url = f"{image_server}/green.png"
    store = Store(tmp_path / "db", encoder=ToyEncoder(), image_policy=REMOTE_PRIVATE)
    res = store.add([{"image": url, "text": "a green square"}, {"image": f"{image_server}/page.html"}],
                    on_error="skip")
    assert len(res.added) == 1 and "text/html" in res.skipped[0].reason
    hit = store.get(res.added)[0]
    assert hit.uris == [url]
    # a reader with the default policy cannot be made to fetch it by what the collection says
    with pytest.raises(RemoteImageError, match="remote images are off"):
        hit.as_input().load_images()  # type: ignore[union-attr]


# ---- no path escape through URIs stored in a collection ----------------------------------------------------------------
def test_stored_uris_cannot_escape_the_root(chroma_server: ChromaServer, collection_name: str, tmp_path: Path) -> None:
    root = tmp_path / "library"
    (root / "sub").mkdir(parents=True)
    inside = make_png(root / "sub" / "inside.png", (1, 2, 3))
    secret = make_png(tmp_path / "secret.png", (9, 9, 9))  # outside the root
    os.symlink(secret, root / "innocent.png")
    os.symlink(tmp_path, root / "up")
    policy = ImagePolicy(root=root)
    store = Store(url=chroma_server.url, encoder=ToyEncoder(), collection=collection_name)
    store.add([{"image": inside, "text": "legit"}])
    # records written straight into the shared collection by someone else, pointing outside the root
    poisoned = {
        "dotdot": str(root / "sub" / ".." / ".." / "secret.png"),
        "absolute": str(secret),
        "symlink-file": str(root / "innocent.png"),
        "symlink-dir": str(root / "up" / "secret.png"),
        "file-url": f"file://{secret}",
        "loopback-url": "http://127.0.0.1:9/secret.png",
    }
    store.add_vectors(list(poisoned), np.ones((len(poisoned), 64)), uris=list(poisoned.values()))
    hits = {h.id: h for h in store.get(store.ids())}
    legit = next(h for h in hits.values() if h.document == "legit")
    assert legit.as_input().load_images(policy).images[0].image.getpixel((0, 0)) == (1, 2, 3)  # type: ignore[union-attr]
    for rid in poisoned:
        item = hits[rid].as_input()
        assert item is not None and item.image_uris == [poisoned[rid]]
        with pytest.raises(ImageLoadError, match="outside the allowed root|scheme is not supported|remote images"):
            item.load_images(policy)


class PixelReranker(Reranker):
    """Scores a candidate by its first image's top-left red value: a real reranker that must read images."""

    name = "pixel"

    def _score_batch(self, query: Interleaved, candidates: Any, *, instruction: str | None) -> list[float]:
        return [float(c.images[0].image.getpixel((0, 0))[0]) if c.images else 0.0 for c in candidates]


def test_reranking_a_poisoned_collection_reads_nothing_outside_the_root(chroma_server: ChromaServer,
                                                                       collection_name: str, tmp_path: Path) -> None:
    root = tmp_path / "library"
    root.mkdir()
    secret = make_png(tmp_path / "secret.png", (250, 0, 0))  # would win the rerank if it were read
    store = Store(url=chroma_server.url, encoder=ToyEncoder(), collection=collection_name)
    legit = store.add([{"image": make_png(root / "a.png", (100, 0, 0)), "text": "red square"}]).added
    store.add_vectors(["poisoned"], store.encoder.encode_documents(["red square"]), uris=[str(secret)],
                      documents=["red square"])
    reranker = PixelReranker()
    reranker.image_policy = ImagePolicy(root=root)
    with pytest.warns(UserWarning, match=r"id 'poisoned'.*outside the allowed root"):
        hits = retrieve(store, "red square", k=2, fetch_k=2, reranker=reranker, on_error="skip")
    assert [h.id for h in hits] == [legit[0]] and hits[0].rerank_score == 100.0
    assert [s.id for s in hits.skipped] == ["poisoned"]  # left out, and reported by name
    with pytest.raises(ImageLoadError, match=r"id 'poisoned'.*outside the allowed root"):
        retrieve(store, "red square", k=2, fetch_k=2, reranker=reranker)
