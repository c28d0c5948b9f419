"""The search page in a real headless Chromium, against `mmembed serve` started as a subprocess.

The browser is Debian's ``chromium`` package (installed by .ci/run, and here with apt-get when missing and we
are root), driven by Playwright with ``executable_path``; Playwright's own browser download is never used. In CI
(``CI`` set) a missing browser fails the test instead of skipping it. The server runs the real default model
over the demo's two collections (60 real Tux Paint stamps; images only, and images + captions).

Set ``MMEMBED_UPDATE_SCREENSHOT=1`` to rewrite docs/serve.png, the README's screenshot, from this test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import COLLECTIONS

pytestmark = pytest.mark.network_data

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests: .ci/run installs Debian's chromium)")
    pytest.skip(reason)


def _chromium() -> str:
    if not Path(CHROMIUM).exists() and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=600, check=False)
    if not Path(CHROMIUM).exists():
        _missing("Chromium is not installed (apt-get install chromium)")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_db) -> Iterator[str]:  # type: ignore[no-untyped-def]
    db, _ = demo_db
    port = _free_port()
    cmd = [sys.executable, "-m", "mmembed.cli", "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}",
           "--log-level", "warning"]
    for c in COLLECTIONS:
        cmd += ["-c", c]
    log = open(db.parent / "serve.log", "w+b")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if json.load(r)["status"] == "ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                pytest.fail(f"mmembed serve did not start: {log.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser_page(server, tmp_path_factory):  # type: ignore[no-untyped-def]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (it is in the dev extra)")
    exe = _chromium()
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=exe, headless=True, args=ARGS,
            viewport={"width": 1200, "height": 860})
        page = ctx.new_page()
        page.set_default_timeout(120_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(server + "/")
        page.errors = errors  # type: ignore[attr-defined]
        yield page
        ctx.close()


def _done(page) -> int:  # type: ignore[no-untyped-def]
    """How many searches the page has finished (results drawn, or an error shown): its ``data-done``."""
    return int(page.locator("#results").get_attribute("data-done") or 0)


def _after(page, action, *, expect_error: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Do ``action`` (which starts a search) and wait until the page has finished that search."""
    before = _done(page)
    action()
    deadline = time.time() + 120  # generous: a shared 2-core machine under load answers slowly
    while _done(page) <= before:
        if time.time() > deadline:
            raise AssertionError(f"the search did not finish; status={page.locator('#status').inner_text()!r}")
        time.sleep(0.1)
    error = page.locator("#error")
    if expect_error:
        assert error.is_visible(), "expected an error message"
    else:
        assert not error.is_visible(), error.inner_text()
        assert "results from" in page.locator("#status").inner_text()


def _search(page, *, expect_error: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Submit the form with the keyboard (Enter in the words box)."""
    _after(page, lambda: page.get_by_role("searchbox", name="Words").press("Enter"), expect_error=expect_error)


def _thumbs_loaded(page) -> int:  # type: ignore[no-untyped-def]
    """How many result thumbnails finished loading as real pixels (waits for every one to settle)."""
    loc = page.locator("#results img.thumb")
    deadline = time.time() + 120
    while time.time() < deadline:
        state = loc.evaluate_all("els => els.map(i => i.complete ? i.naturalWidth : -1)")
        if state and all(w >= 0 for w in state):
            return sum(1 for w in state if w > 0)
        time.sleep(0.1)
    raise AssertionError("thumbnails did not finish loading")


def _cards(page) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return page.locator("#results li.card").evaluate_all(
        "els => els.map(e => ({id: e.dataset.id, modality: e.dataset.modality, "
        "caption: e.querySelector('.caption').textContent}))")


def _set_collection(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("Collection", exact=True).select_option(name)


def test_text_query_shows_thumbnails(browser_page) -> None:
    page = browser_page
    assert page.get_by_role("radio", name="find images").is_checked()
    page.get_by_role("searchbox", name="Words").fill("a car")
    _search(page)
    cards = _cards(page)
    assert len(cards) == 12 and cards[0]["caption"] == "A sports car."
    assert _thumbs_loaded(page) == 12
    assert "task text->image" in page.locator("#status").inner_text()
    assert not page.errors  # type: ignore[attr-defined]
    # keyboard: from the words, Tab reaches the search button, then the image picker, then what to find
    page.get_by_role("searchbox", name="Words").focus()
    order = []
    for _ in range(3):
        page.keyboard.press("Tab")
        order.append(page.evaluate("() => document.activeElement.id || document.activeElement.value"))
    assert order == ["go", "file", "images"], order


def test_uploaded_image_finds_images(browser_page, demo_db) -> None:
    _, stamps = demo_db
    duck = next(s for s in stamps if "duck" in s.caption.lower())
    page = browser_page
    page.get_by_role("searchbox", name="Words").fill("")
    page.locator("#file").set_input_files(str(duck.image_path))
    assert page.locator("#preview").is_visible()
    _after(page, lambda: page.get_by_role("button", name="Search").click())
    cards = _cards(page)
    assert cards[0]["caption"] == duck.caption and {c["modality"] for c in cards} == {"image"}
    assert "task image->image" in page.locator("#status").inner_text()
    assert _thumbs_loaded(page) == len(cards)
    # the same image, changed by words: "images like this one, changed by my words"
    page.get_by_role("searchbox", name="Words").fill("a car")
    # choosing what to find re-runs the search
    _after(page, lambda: page.get_by_role("radio", name="images like this one, changed by my words").check())
    assert "task image+text->image" in page.locator("#status").inner_text()
    assert "A sports car." in [c["caption"] for c in _cards(page)]
    page.get_by_role("button", name="Remove image").click()
    assert not page.locator("#preview").is_visible()
    _after(page, lambda: page.get_by_role("radio", name="find images").check())  # words only again


def test_task_switch_returns_images_or_captions(browser_page) -> None:
    page = browser_page
    assert page.get_by_role("radio", name="find images").is_checked()
    page.get_by_role("searchbox", name="Words").fill("a bird")
    _after(page, lambda: _set_collection(page, "tuxpaint-demo-mixed"))  # another collection re-runs the search
    assert "tuxpaint-demo-mixed" in page.locator("#served").inner_text()
    assert {c["modality"] for c in _cards(page)} == {"image"}
    assert _thumbs_loaded(page) == 12
    # switch with the keyboard: arrow keys move between the radio buttons, and the search re-runs
    page.get_by_role("radio", name="find images").focus()
    _after(page, lambda: page.keyboard.press("ArrowRight"))
    assert page.get_by_role("radio", name="find text").is_checked()
    cards = _cards(page)
    assert {c["modality"] for c in cards} == {"text"} and len(cards) == 12
    assert page.locator("#results .card.is-text .doc-text").count() == 12
    assert "task text->text" in page.locator("#status").inner_text()
    _after(page, lambda: _set_collection(page, "tuxpaint-demo"))
    _after(page, lambda: page.get_by_role("radio", name="find images").check())


_GIVE_FILE = """([kind, b64, name]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], name, {type: "image/png"}));
    if (kind === "drop") {
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true,
                                                                               cancelable: true}));
    } else {
        document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: dt, bubbles: true, cancelable: true}));
    }
}"""


@pytest.mark.parametrize("kind", ["drop", "paste"])
def test_dropped_or_pasted_image_is_the_query(browser_page, demo_db, kind) -> None:
    import base64

    _, stamps = demo_db
    cherries = next(s for s in stamps if "cherries" in s.caption.lower())
    page = browser_page
    page.get_by_role("searchbox", name="Words").fill("")
    page.evaluate(_GIVE_FILE, [kind, base64.b64encode(cherries.image_path.read_bytes()).decode(), "c.png"])
    assert page.locator("#preview").is_visible() and page.locator("#file-name").inner_text() == "c.png"
    _search(page)
    assert _cards(page)[0]["caption"] == cherries.caption
    assert "task image->image" in page.locator("#status").inner_text()
    page.get_by_role("button", name="Remove image").click()


def test_bad_upload_shows_an_error(browser_page, tmp_path) -> None:
    page = browser_page
    bad = tmp_path / "notes.png"
    bad.write_text("these are words, not pixels\n")
    page.locator("#file").set_input_files(str(bad))
    page.get_by_role("searchbox", name="Words").fill("")
    _search(page, expect_error=True)
    error = page.get_by_role("alert")
    assert "is not an image" in error.inner_text() and "text file" in error.inner_text()
    page.errors.clear()  # type: ignore[attr-defined]  # the browser logs the 415 it was meant to get
    page.get_by_role("button", name="Remove image").click()
    page.get_by_role("searchbox", name="Words").fill("a car")
    _search(page)
    assert not page.locator("#error").is_visible()


def test_screenshot(browser_page, tmp_path) -> None:
    page = browser_page
    page.get_by_role("searchbox", name="Words").fill("fruit")
    _search(page)
    assert _thumbs_loaded(page) == 12
    target = REPO / "docs" / "serve.png" if os.environ.get("MMEMBED_UPDATE_SCREENSHOT") else tmp_path / "serve.png"
    page.screenshot(path=str(target))
    assert target.stat().st_size > 20_000
    assert not page.errors  # type: ignore[attr-defined]


def test_api_docs_render_offline(browser_page, server) -> None:
    """Swagger UI at /docs draws the API from files this server serves: no request leaves 127.0.0.1."""
    page = browser_page.context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(server + "/docs")
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock-summary-path", has_text="/search").count() == 1
    assert requested and all(u.startswith(server) for u in requested), requested
    page.close()


def test_a_missing_browser_fails_in_ci_and_skips_elsewhere(monkeypatch, tmp_path) -> None:
    """The gate above: with CI set, no Chromium is a failure, never a skip."""
    from . import test_serve_browser as module

    monkeypatch.setattr(module, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setattr(module.shutil, "which", lambda name: None)  # and no apt-get to install it with
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser tests"):
        module._chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        module._chromium()

