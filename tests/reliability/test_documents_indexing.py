"""Documents into the store: ``mmembed index`` over a mixed folder, a document's chunks written together, a
writer SIGKILLed mid-document, unchanged documents skipped, edited ones replaced, server mode.

The oracle for ids is :func:`mmembed.load_documents` (chunk ids are content hashes known before writing).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from documents_support import SVG_OK, make_pdf, text_image
from mmembed.documents import load_documents

from .conftest import LOGGED_TOY, TESTS_DIR, TOY, ChromaServer, cli_cmd, cli_env, make_captioned_images, \
    read_encode_log, run_cli

N_PAGES = 8


def records(db: Path, collection: str = "mmembed") -> dict[str, dict]:
    """id -> metadata, read by a fresh process (an embedded db is read by one process at a time)."""
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from conftest import ToyEncoder
        from mmembed.store import Store
        got = Store({str(db)!r}, encoder=ToyEncoder(), collection={collection!r}).collection.get(include=["metadatas"])
        print(json.dumps(dict(zip(got["ids"], got["metadatas"]))))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def pdf_ids(pdf: Path, tmp_path: Path) -> list[str]:
    return [c.id for c in load_documents(pdf, assets_dir=tmp_path / "oracle-assets", dpi=30)]


def embedded_docs(log: Path, pid: int | None = None) -> list[str]:
    return [label for e in read_encode_log(log) if not e["query"] and (pid is None or e["pid"] == pid)
            for label in e["items"]]


def wait_for(log: Path, n: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while len(embedded_docs(log)) < n:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the writer did not get far enough"
        time.sleep(0.05)


def test_mixed_folder_index_summary_search_and_rerun(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    make_captioned_images(folder / "pics", range(6))
    make_pdf(folder / "manual.pdf", ["Volcanoes erupt molten rock.", "Glaciers carve deep valleys."])
    make_pdf(folder / "locked.pdf", ["secret"], password="pw")
    (folder / "guide.md").write_text("# Setup\n\nPenguins need cold water.\n\n## Feeding\n\nKrill every morning.\n")
    (folder / "page.html").write_text("<html><body><h1>Tides</h1><p>The moon pulls the oceans.</p></body></html>")
    (folder / "icon.svg").write_text(SVG_OK)
    (folder / "bad.svg").write_text(SVG_OK.replace("<title>", '<image href="/etc/passwd"/><title>'))
    db = tmp_path / "db"
    res = run_cli("index", str(folder), "--db", str(db), "-e", TOY, "--dpi", "30")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "pdf       1 documents, 2 chunks, 2 pages, 2 images, 1 skipped" in out
    assert "markdown  1 documents, 2 chunks, 0 images, 0 skipped" in out
    assert "html      1 documents, 1 chunks, 0 images, 0 skipped" in out
    assert "svg       1 documents, 1 chunks, 1 images, 1 skipped" in out
    assert "image     6 documents, 6 chunks, 6 images, 0 skipped" in out
    assert "12 chunks added, 0 already indexed, 2 files skipped" in out
    assert "locked.pdf is encrypted" in res.stderr and "bad.svg references an external resource" in res.stderr
    assets = tmp_path / "db_assets"
    assert len(list(assets.rglob("*.png"))) == 3  # two pages, one SVG: beside the db, never base64
    meta = records(db)
    pages = sorted((m["source"], m["page"]) for m in meta.values() if m.get("format") == "pdf")
    assert pages == [("manual.pdf", 1), ("manual.pdf", 2)]
    assert all(m["chunks"] == 2 for m in meta.values() if m.get("format") == "pdf")
    found = run_cli("search", "Glaciers carve deep valleys", "--db", str(db), "-e", TOY, "-k", "20")
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    # the toy encoder's page vectors are dominated by the (white) page image; the text still orders the pages
    rank = {p: next(i for i, line in enumerate(lines) if f"manual.pdf p.{p}" in line) for p in (1, 2)}
    assert rank[2] < rank[1]
    found = run_cli("search", "Krill every morning", "--db", str(db), "-e", TOY, "-k", "1", "--json")
    [hit] = json.loads(found.stdout)
    assert hit["metadata"]["heading"] == "Setup > Feeding"
    # the indexed folder and the assets directory are recorded on the collection
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(TESTS_DIR)!r})
        from conftest import ToyEncoder
        from mmembed.store import Store
        print([str(p) for p in Store({str(db)!r}, encoder=ToyEncoder()).roots])
    """)
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert str(folder.resolve()) in listed and str(assets.resolve()) in listed
    again = run_cli("index", str(folder), "--db", str(db), "-e", TOY, "--dpi", "30")
    assert again.returncode == 0 and "0 chunks added, 12 already indexed" in again.stdout


def test_sigkill_mid_document_writes_nothing_then_rerun_completes(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    pdf = make_pdf(folder / "book.pdf", [f"Chapter {i} tells of island number {i}." for i in range(N_PAGES)])
    expected = pdf_ids(pdf, tmp_path)
    db, log = tmp_path / "db", tmp_path / "encode.log"
    env = cli_env(MMEMBED_TEST_ENCODE_LOG=str(log), MMEMBED_TEST_ENCODE_DELAY="0.2")
    cmd = cli_cmd("index", str(folder), "--db", str(db), "-e", LOGGED_TOY, "-b", "1", "--dpi", "30")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    wait_for(log, N_PAGES // 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert records(db) == {}  # the document's chunks are written together or not at all
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(records(db)) == sorted(expected)
    before = len(embedded_docs(log))
    third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert third.returncode == 0 and "0 chunks added, 8 already indexed" in third.stdout
    assert len(embedded_docs(log)) == before  # an unchanged document is not even read again


def test_document_over_the_write_batch_is_completed_after_sigkill(tmp_path: Path) -> None:
    """Past Chroma's batch limit (here forced to 3) a document is written in pieces; a writer killed between
    pieces leaves a part, which the re-run detects and completes, embedding only the missing chunks."""
    folder = tmp_path / "docs"
    folder.mkdir()
    pdf = make_pdf(folder / "big.pdf", [f"Section {i} describes harbour number {i}." for i in range(N_PAGES)])
    expected = pdf_ids(pdf, tmp_path)
    db, log = tmp_path / "db", tmp_path / "encode.log"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from reliability.toy_plugin import logged_toy
        from mmembed.store import Store
        from mmembed.documents import LoadOptions
        from mmembed.documents.indexing import index_paths
        store = Store({str(db)!r}, encoder=logged_toy("x"))
        out = index_paths(store, {str(folder)!r}, assets_dir={str(tmp_path / "assets")!r}, batch_size=1,
                          write_batch=3, on_error="raise", options=LoadOptions(dpi=30))
        print(out.added, out.unchanged)
    """)
    env = cli_env(MMEMBED_TEST_ENCODE_LOG=str(log), MMEMBED_TEST_ENCODE_DELAY="0.2")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(log, 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    partial = records(db)
    assert 3 <= len(partial) < N_PAGES and len(partial) % 3 == 0
    assert set(partial) <= set(expected)
    assert all("chunks" not in m for m in partial.values())  # not marked complete
    rerun = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    added, unchanged = map(int, rerun.stdout.split())
    assert (added, unchanged) == (N_PAGES - len(partial), len(partial))
    final = records(db)
    assert sorted(final) == sorted(expected)
    assert all(m["chunks"] == N_PAGES for m in final.values())  # now marked complete
    second_pid = read_encode_log(log)[-1]["pid"]
    assert len(embedded_docs(log, second_pid)) == N_PAGES - len(partial)


def test_edited_document_replaces_its_old_chunks(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    pdf = make_pdf(folder / "notes.pdf", ["Page about apples.", "Page about pears.", "Page about plums."])
    db = tmp_path / "db"
    assert run_cli("index", str(folder), "--db", str(db), "-e", TOY, "--dpi", "30").returncode == 0
    old = records(db)
    make_pdf(pdf, ["Page about apples.", "Page about quinces now.", "Page about plums."])
    new_ids = pdf_ids(pdf, tmp_path)
    res = run_cli("index", str(folder), "--db", str(db), "-e", TOY, "--dpi", "30", "--replace-changed")
    assert res.returncode == 0, res.stderr
    assert "1 chunks added, 2 already indexed" in res.stdout and "1 outdated records removed" in res.stdout
    now = records(db)
    assert sorted(now) == sorted(new_ids)
    assert len(set(old) & set(now)) == 2  # unchanged pages kept their ids (not re-embedded)
    assert all(m["doc_sha256"] == now[new_ids[0]]["doc_sha256"] and m["chunks"] == 3 for m in now.values())


def test_server_mode_needs_an_assets_directory(tmp_path: Path, chroma_server: ChromaServer,
                                               collection_name: str) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    make_pdf(folder / "a.pdf", ["Served page."])
    res = run_cli("index", str(folder), "--url", chroma_server.url, "-c", collection_name, "-e", TOY)
    assert res.returncode == 2 and "--assets DIR is required with a Chroma server" in res.stderr
    res = run_cli("index", str(folder), "--url", chroma_server.url, "-c", collection_name, "-e", TOY,
                  "--assets", str(tmp_path / "shared-assets"), "--dpi", "30")
    assert res.returncode == 0, res.stderr
    assert "1 chunks added" in res.stdout and len(list((tmp_path / "shared-assets").rglob("*.png"))) == 1
    found = run_cli("search", "Served page", "--url", chroma_server.url, "-c", collection_name, "-e", TOY, "-k", "1")
    assert "a.pdf p.1" in found.stdout
