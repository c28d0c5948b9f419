"""Every limit of `mmembed serve`: upload size, content sniffing, SVG, pixels, path traversal, roots, CORS, no stack
traces, request timeouts, read-only by default and bearer-token writes, loopback binding.

These run the real app on a real embedded Chroma; the encoder is the small ToyEncoder (tests/conftest.py) because
what is under test is the service, not a model.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from conftest import ToyEncoder, make_png
from mmembed.cli import app as cli_app
from mmembed.serve.app import ServeConfig, create_app
from mmembed.serve.cli import parse_listen
from mmembed.store import Store

TOKEN = "t0ken-for-tests-0123456789"
SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 40">'
       b'<rect width="40" height="40" fill="#d42"/><circle cx="20" cy="20" r="9" fill="#fff"/></svg>')


def _png(color=(200, 30, 30), size=(32, 32)) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def layout(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A root folder with two images, a secret file beside it, and a collection recording only the root."""
    root = tmp_path / "root"
    root.mkdir()
    make_png(root / "red.png", (220, 20, 20))
    make_png(root / "blue.png", (20, 30, 220))
    secret = make_png(tmp_path / "secret.png", (1, 2, 3))
    (root / "link.png").symlink_to(secret)
    store = Store(tmp_path / "db", encoder=ToyEncoder(), collection="files")
    store.record_roots([root])
    store.add([{"image": root / "red.png", "text": "red"}, {"image": root / "blue.png", "text": "blue"}],
              ids=["red", "blue"])
    enc = store.encoder
    vec = enc.encode_documents(["x"])[0]
    # records pointing outside the root, through .., through a symlink, at a URL
    store.add_vectors(["outside", "dotdot", "symlink", "url"], [vec] * 4, uris=[
        str(secret), str(root / ".." / "secret.png"), str(root / "link.png"), "https://example.invalid/a.png"])
    return tmp_path, root, store


def _client(store: Store, **config) -> TestClient:  # type: ignore[no-untyped-def]
    config.setdefault("reranker", None)  # the default reranker needs the default model; these tests need neither
    return TestClient(create_app(store, ServeConfig(**config)), raise_server_exceptions=False)


# ---- uploads ---------------------------------------------------------------------------------------------------
def test_upload_size_cap_by_length_and_while_streaming(layout) -> None:
    _, _, store = layout
    c = _client(store, max_upload_bytes=50_000)
    big = _png(size=(600, 600)) + b"\0" * 60_000
    r = c.post("/search", files={"image": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "50000-byte limit" in r.json()["error"]

    def chunks():  # no Content-Length: the cap is enforced while the body arrives
        for _ in range(20):
            yield b"x" * 10_000

    r = c.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    uri = "data:image/png;base64," + base64.b64encode(big).decode()
    assert c.post("/search", json={"image": uri}).status_code == 413


@pytest.mark.parametrize("name, data, status, message", [
    ("notes.png", b"just some words, not a picture\n", 415, "it looks like a text file"),
    ("doc.png", b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", 415, "it looks like a PDF document"),
    ("page.jpg", b"<!doctype html><html><body>hi</body></html>", 415, "it looks like an HTML page"),
    ("tool.gif", b"\x7fELF\x02\x01\x01" + b"\0" * 64, 415, "it looks like an executable"),
    ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0garbage" * 20, 422, "'broken.png' could not be decoded"),
    ("empty.png", b"", 400, "give a query text, an image, or both"),
], ids=["text", "pdf", "html", "elf", "corrupt-png", "empty"])
def test_uploads_are_sniffed_by_their_bytes(layout, name, data, status, message) -> None:
    _, _, store = layout
    r = _client(store).post("/search", files={"image": (name, data, "image/png")})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_pixel_bombs_are_refused(layout) -> None:
    _, _, store = layout
    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, format="PNG")  # 81 Mpx in a few kB
    assert len(buf.getvalue()) < 100_000
    r = _client(store).post("/search", files={"image": ("bomb.png", buf.getvalue(), "image/png")})
    assert r.status_code == 422 and "decompression bomb" in r.json()["error"]


def test_svg_uploads_are_rendered_to_pixels_and_hostile_svg_is_refused(layout) -> None:
    _, _, store = layout
    c = _client(store)
    r = c.post("/search", files={"image": ("q.svg", SVG, "image/svg+xml")}, data={"goal": "images"})
    assert r.status_code == 200, r.text
    assert r.json()["task"] == "image->image"
    # rendered like a PNG of the same picture: same ranking as the rasterised SVG sent as PNG
    from mmembed.serve.uploads import render_svg, to_png

    png = to_png(render_svg(SVG, name="q"))
    assert Image.open(io.BytesIO(png)).size == (1024, 1024)
    same = c.post("/search", files={"image": ("q.png", png, "image/png")}, data={"goal": "images"})
    assert [h["id"] for h in same.json()["hits"]] == [h["id"] for h in r.json()["hits"]]
    external = SVG.replace(b"<rect", b'<image href="file:///etc/hostname" width="9" height="9"/><rect')
    r = c.post("/search", files={"image": ("x.svg", external, "image/svg+xml")})
    assert r.status_code == 415 and "external files" in r.json()["error"]
    entity = b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa">]>' + SVG.split(b"?>", 1)[1]
    r = c.post("/search", files={"image": ("e.svg", entity, "image/svg+xml")})
    assert r.status_code == 415 and "entities" in r.json()["error"]
    r = c.post("/search", files={"image": ("bad.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><rect", "image/svg+xml")})
    assert r.status_code == 422 and "could not be rendered" in r.json()["error"]


# ---- files served ----------------------------------------------------------------------------------------------
def test_only_files_under_the_roots_are_served(layout) -> None:
    _, root, store = layout
    c = _client(store)
    ok = c.get("/items/red/image")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(ok.content)).getpixel((5, 5))[0] > 150
    for rid in ("outside", "dotdot", "symlink", "url"):
        r = c.get(f"/items/{rid}/image")
        assert r.status_code == 403, (rid, r.text)
        assert "refused" in r.json()["error"] or "not URLs" in r.json()["error"]
        assert str(root.parent) not in r.text  # no server paths in the answer
    # the links in search results say the same, without a URL
    hits = c.post("/search", json={"text": "x", "k": 10}).json()["hits"]
    by_id = {h["id"]: h for h in hits}
    assert by_id["red"]["images"][0]["url"] and by_id["outside"]["images"][0]["url"] is None
    assert "outside the directories" in by_id["outside"]["images"][0]["note"]
    # traversal through the id itself only ever names a record, which does not exist
    for path in ("/items/..%2F..%2Fsecret.png/image", "/items/../../secret.png/image", "/items/red/../../image"):
        assert c.get(path).status_code == 404, path
    assert c.get("/items/red/image?n=5").status_code == 404
    assert c.get("/static/../../secret.png").status_code == 404


def test_a_deleted_file_is_a_404_and_collections_without_roots_serve_nothing(tmp_path: Path) -> None:
    img = make_png(tmp_path / "green.png", (20, 200, 30))
    store = Store(tmp_path / "db", encoder=ToyEncoder(), collection="old")  # no record_roots: an old collection
    store.add([{"image": img}], ids=["green"])
    c = _client(store)
    r = c.get("/items/green/image")
    assert r.status_code == 403 and "records no file roots" in r.json()["error"]
    hit = c.post("/search", json={"text": "green", "k": 1}).json()["hits"][0]
    assert hit["images"][0]["url"] is None and "records no file roots" in hit["images"][0]["note"]
    assert c.get("/health").json()["collections"]["old"]["roots_recorded"] is False
    store.record_roots([tmp_path])
    assert c.get("/items/green/image").status_code == 200
    img.unlink()
    assert c.get("/items/green/image").status_code == 404


# ---- CORS, errors, timeouts ------------------------------------------------------------------------------------
def test_cors_is_off_by_default_and_opt_in_per_origin(layout) -> None:
    _, _, store = layout
    preflight = {"Origin": "http://elsewhere.test", "Access-Control-Request-Method": "POST"}
    off = _client(store)
    assert "access-control-allow-origin" not in off.get("/health", headers={"Origin": "http://elsewhere.test"}).headers
    assert "access-control-allow-origin" not in off.options("/search", headers=preflight).headers
    on = _client(store, cors_origins=["http://app.test"])
    allowed = on.options("/search", headers={**preflight, "Origin": "http://app.test"})
    assert allowed.headers["access-control-allow-origin"] == "http://app.test"
    assert "access-control-allow-origin" not in on.options("/search", headers=preflight).headers


def test_unexpected_errors_never_show_a_stack_trace(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", encoder=ToyEncoder(), collection="gone")
    store.add(["some text"], ids=["a"])
    c = _client(store)
    store._client.delete_collection("gone")  # the collection disappears under the running server
    r = c.post("/search", json={"text": "some text"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal error (see the server log)"}
    assert "Traceback" not in r.text and "chromadb" not in r.text


def test_security_headers(layout) -> None:
    _, _, store = layout
    r = _client(store).get("/")
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_slow_requests_time_out(layout) -> None:
    """A client that sends its body too slowly is answered 504 when the time limit passes (uvicorn, real socket)."""
    import uvicorn

    _, _, store = layout
    port = _free_port()
    app = create_app(store, ServeConfig(timeout=1.0, reranker=None))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"text\":")
            start = time.time()
            answer = s.recv(4096)
            waited = time.time() - start
        assert answer.startswith(b"HTTP/1.1 504"), answer[:200]
        assert b"longer than 1 s" in answer and 0.8 < waited < 8
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ---- writes ----------------------------------------------------------------------------------------------------
def test_read_only_by_default(layout) -> None:
    _, _, store = layout
    r = _client(store).post("/index", files={"files": ("a.png", _png(), "image/png")},
                            headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 403 and "read-only" in r.json()["error"]


def test_writes_need_the_bearer_token(layout, tmp_path: Path) -> None:
    _, root, store = layout
    uploads = tmp_path / "uploads"
    c = _client(store, allow_writes=True, token=TOKEN, upload_dir=uploads)
    files = {"files": ("green.png", _png((20, 200, 30)), "image/png")}
    missing = c.post("/index", files=files)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = c.post("/index", files=files, headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401 and "wrong bearer token" in wrong.json()["error"]
    before = store.count()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    ok = c.post("/index", files=[("files", ("green.png", _png((20, 200, 30)), "image/png")),
                                 ("files", ("shape.svg", SVG, "image/svg+xml"))],
                data={"captions": ["a green square", "a red square with a dot"]}, headers=auth)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert len(body["added"]) == 2 and body["count"] == before + 2
    # uploaded files are kept as PNG pixels under the upload dir (a recorded root); the SVG is never kept as SVG
    assert sorted(p.suffix for p in uploads.iterdir()) == [".png", ".png"]
    assert uploads.resolve() in store.roots
    hits = c.post("/search", json={"text": "a green square", "k": 10,
                                   "filter": {"source": "upload:green.png"}}).json()["hits"]
    assert [h["id"] for h in hits] == body["added"][:1] and hits[0]["text"] == "a green square"
    thumb = c.get(hits[0]["images"][0]["url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    bad = c.post("/index", files={"files": ("x.png", b"not an image", "image/png")}, headers=auth)
    assert bad.status_code == 415 and store.count() == before + 2
    # server-side paths: only under the recorded roots
    outside = c.post("/index", json={"paths": [str(tmp_path / "secret.png")]}, headers=auth)
    assert outside.status_code == 403 and "outside the directories" in outside.json()["error"]
    make_png(root / "yellow.png", (240, 230, 20))
    inside = c.post("/index", json={"paths": [str(root / "yellow.png")]}, headers=auth)
    assert inside.status_code == 200 and len(inside.json()["added"]) == 1
    # a folder under the root: its symlink to the secret file is not read
    folder = c.post("/index", json={"paths": [str(root)]}, headers=auth)
    assert folder.status_code == 200, folder.text
    assert folder.json()["skipped"] == [{"name": "link.png", "reason": "links outside the recorded roots; refused"}]


def test_write_configuration_is_checked_at_start(layout, tmp_path: Path) -> None:
    from mmembed.errors import InputError

    with pytest.raises(InputError, match="MMEMBED_SERVE_TOKEN"):
        ServeConfig(allow_writes=True)
    with pytest.raises(InputError, match="too short"):
        ServeConfig(allow_writes=True, token="short")
    db = tmp_path / "db"
    env = {k: v for k, v in os.environ.items() if k != "MMEMBED_SERVE_TOKEN"}
    r = CliRunner(env=env).invoke(cli_app, ["serve", "--db", str(db), "-c", "files", "--allow-writes"])
    assert r.exit_code == 2 and "MMEMBED_SERVE_TOKEN" in r.output


def test_cli_refuses_missing_database_and_collection_and_binds_loopback(tmp_path: Path, layout) -> None:
    r = CliRunner().invoke(cli_app, ["serve", "--db", str(tmp_path / "nothing-here")])
    assert r.exit_code == 2 and "nothing-here does not exist" in r.output
    assert not (tmp_path / "nothing-here").exists()
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    import typer

    with pytest.raises(typer.BadParameter):
        parse_listen("8080")
    serve = typer.main.get_command(cli_app).commands["serve"]  # type: ignore[attr-defined]
    assert {p.name: p.default for p in serve.params}["listen"] == "127.0.0.1:8080"
    _, _, store = layout
    from mmembed.errors import StoreNotFoundError
    from mmembed.serve.cli import open_stores

    with pytest.raises(StoreNotFoundError, match="collection 'nope' does not exist .* existing collections: files"):
        open_stores(tmp_path / "db", ["files", "nope"], None, None, 8000, store.encoder)
