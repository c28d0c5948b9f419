"""Resumable, idempotent indexing: ``mmembed index`` SIGKILLed mid-run, then run again.

The oracle is an uninterrupted in-process index of the same folder: after kill + re-run the collection must
hold exactly its ids (each input once), the re-run must embed exactly the inputs the killed run had not
stored (the embedding cache skips the rest), and a third run must embed nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ToyEncoder, make_png
from mmembed import InputError, Store

from .conftest import (
    LOGGED_TOY,
    TOY,
    TESTS_DIR,
    ChromaServer,
    cli_cmd,
    cli_env,
    make_captioned_images,
    read_encode_log,
    run_cli,
)

N_IMAGES = 40


def expected_ids(folder: Path, tmp_path: Path) -> dict[str, str]:
    """source -> id, from an uninterrupted in-process index of the folder."""
    from mmembed.sources import scan_folder

    docs = scan_folder(folder)
    store = Store(tmp_path / "reference-db", encoder=ToyEncoder(), collection="reference")
    res = store.add([d.item for d in docs], metadatas=[d.metadata for d in docs])
    assert len(res.added) == len(docs) == N_IMAGES
    return {d.metadata["source"]: rid for d, rid in zip(docs, res.added)}


def snapshot(target: list[str], collection: str) -> dict[str, str]:
    """id -> source as a fresh process sees the collection (an embedded db is read by one process at a time)."""
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from conftest import ToyEncoder
        from mmembed.store import Store
        args = {target!r}
        kw = {{"url": args[1]}} if args[0] == "--url" else {{"path": args[1]}}
        col = Store(encoder=ToyEncoder(), collection={collection!r}, **kw).collection
        got = col.get(include=["metadatas"])
        print(json.dumps({{i: m["source"] for i, m in zip(got["ids"], got["metadatas"])}}))
        print(col.count())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    records, count = out.stdout.strip().splitlines()
    got = json.loads(records)
    assert int(count) == len(got)  # count() agrees with the records actually readable
    return got


def embedded_sources(log: Path) -> list[str]:
    """Sources of every document embedded, per the logged toy encoder (``img-00003.png picture number 3``)."""
    return [label.split()[0] for entry in read_encode_log(log) if not entry["query"] for label in entry["items"]]


@pytest.mark.parametrize("mode", ["db", "server"])
def test_sigkill_mid_run_then_rerun_indexes_every_input_exactly_once(mode: str, tmp_path: Path, collection_name: str,
                                                                     chroma_server: ChromaServer) -> None:
    folder = tmp_path / "pics"
    make_captioned_images(folder, range(N_IMAGES))
    want = expected_ids(folder, tmp_path)
    collection = collection_name
    target = ["--url", chroma_server.url] if mode == "server" else ["--db", str(tmp_path / "db")]
    common = ["index", str(folder), *target, "-c", collection, "-e", LOGGED_TOY, "--batch-size", "2"]

    # run 1: slowed down to ~0.15 s per batch of 2, killed once at least 6 batches (1.5 upsert chunks) are done
    log1 = tmp_path / "run1.jsonl"
    proc = subprocess.Popen(cli_cmd(*common), env=cli_env(MMEMBED_TEST_ENCODE_LOG=str(log1),
                                                          MMEMBED_TEST_ENCODE_DELAY="0.15"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(read_encode_log(log1)) < 6 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL, "the first run finished before it could be killed"
    after_kill = snapshot(target, collection)
    assert 0 < len(after_kill) < N_IMAGES, f"kill should land mid-run, {len(after_kill)} stored"
    assert {want[s] for s in after_kill.values()} == set(after_kill)  # what was stored is correct and whole

    # run 2: resumes; embeds exactly what run 1 had not stored, and says so
    log2 = tmp_path / "run2.jsonl"
    out = run_cli(*common, MMEMBED_TEST_ENCODE_LOG=str(log2))
    assert out.returncode == 0, out.stderr
    missing = sorted(set(want) - set(after_kill.values()))
    assert f"{len(missing)} added, {len(after_kill)} already indexed, 0 skipped" in out.stdout
    assert f"now holds {N_IMAGES} documents" in out.stdout
    assert sorted(embedded_sources(log2)) == missing  # nothing already stored was recomputed, nothing twice

    final = snapshot(target, collection)
    assert final == {rid: source for source, rid in want.items()}  # every input exactly once, ids as expected

    # run 3: nothing left to do, nothing embedded
    log3 = tmp_path / "run3.jsonl"
    out = run_cli(*common, MMEMBED_TEST_ENCODE_LOG=str(log3))
    assert out.returncode == 0, out.stderr
    assert f"0 added, {N_IMAGES} already indexed, 0 skipped" in out.stdout
    assert embedded_sources(log3) == []


def test_new_content_under_an_old_id_replaces_the_record_whole(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", encoder=ToyEncoder())
    image = make_png(tmp_path / "old.png", (200, 0, 0))
    store.add([{"image": image, "text": "old caption"}], ids=["doc"], metadatas=[{"old_only": 1, "shared": "old"}])
    res = store.add(["new text, no image"], ids=["doc"], metadatas=[{"shared": "new"}])
    assert res.added == ["doc"]
    hit = store.get(["doc"])[0]
    # nothing of the old record leaks into the new one (Chroma's upsert alone would merge them)
    assert (hit.document, hit.uris, hit.metadata, hit.modality) == ("new text, no image", [], {"shared": "new"}, "text")
    assert store.collection.get(ids=["doc"], include=["uris"])["uris"] == [None]
    store.add_vectors(["doc"], np.ones((1, 64)), documents=["from vectors"])
    hit = store.get(["doc"])[0]
    assert (hit.document, hit.metadata, hit.modality) == ("from vectors", {}, None) and store.count() == 1


def test_moved_file_updates_its_location_without_re_embedding(tmp_path: Path) -> None:
    from mmembed.sources import scan_folder

    folder = tmp_path / "pics"
    make_captioned_images(folder, range(3))
    encoder = ToyEncoder()
    store = Store(tmp_path / "db", encoder=encoder)
    docs = scan_folder(folder)
    first = store.add([d.item for d in docs], metadatas=[d.metadata for d in docs])
    (folder / "moved").mkdir()
    for suffix in (".png", ".txt"):
        (folder / f"img-00001{suffix}").rename(folder / "moved" / f"img-00001{suffix}")
    encoder.calls.clear()
    docs = scan_folder(folder)
    res = store.add([d.item for d in docs], metadatas=[d.metadata for d in docs])
    assert res.added == [] and sorted(res.unchanged) == sorted(first.added) and encoder.calls == []
    assert res.summary() == "0 added, 3 already indexed, 0 skipped (1 with updated metadata)"
    moved = store.get(res.updated)[0]
    assert moved.uris == [str(folder / "moved" / "img-00001.png")] and moved.metadata == {"source": "moved/img-00001.png"}
    assert store.count() == 3


def test_an_edited_file_replaces_its_old_record_only_when_asked_and_only_once_the_new_one_is_written(
        tmp_path: Path) -> None:
    from mmembed.sources import scan_folder

    folder = tmp_path / "pics"
    make_captioned_images(folder, range(3))
    store = Store(tmp_path / "db", encoder=ToyEncoder())

    def index(**kw: object) -> "object":
        docs = scan_folder(folder)
        return store.add([d.item for d in docs], metadatas=[d.metadata for d in docs], on_error="skip", **kw)

    first = index()
    (folder / "img-00001.txt").write_text("an edited caption")
    plain = index()  # content-hash ids: the edit is a new record beside the old one
    assert len(plain.added) == 1 and plain.replaced == [] and store.count() == 4
    edited = index(replace_by="source")
    assert edited.added == [] and len(edited.replaced) == 1 and store.count() == 3
    assert edited.summary() == "0 added, 3 already indexed, 0 skipped, 1 outdated records removed"
    hits = store.collection.get(where={"source": "img-00001.png"}, include=["documents"])
    assert hits["documents"] == ["an edited caption"] and hits["ids"] == plain.added
    # the image changes too, in one step
    make_png(folder / "img-00002.png", (1, 2, 3))
    res = index(replace_by="source")
    assert len(res.added) == 1 and len(res.replaced) == 1 and store.count() == 3
    assert set(store.ids()) == {first.added[0], plain.added[0], res.added[0]}
    # a file that no longer reads is skipped, and its old record is kept (never lose stored data)
    (folder / "img-00000.png").write_bytes(b"not a png any more")
    res = index(replace_by="source")
    assert len(res.skipped) == 1 and res.replaced == [] and first.added[0] in store.ids()
    with pytest.raises(InputError, match="replace_by must name a metadata key"):
        store.add(["x"], replace_by="")


def test_cli_replace_changed(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    make_captioned_images(folder, range(4))
    common = ["index", str(folder), "--db", str(tmp_path / "db"), "-e", TOY]
    assert run_cli(*common).returncode == 0
    (folder / "img-00003.txt").write_text("the caption was edited")
    out = run_cli(*common, "--replace-changed")
    assert out.returncode == 0, out.stderr
    assert "1 added, 3 already indexed, 0 skipped, 1 outdated records removed" in out.stdout
    assert "holds 4 documents" in out.stdout


def test_server_crash_mid_run_is_reported_and_a_rerun_completes(chroma_server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "pics"
    make_captioned_images(folder, range(N_IMAGES))
    want = expected_ids(folder, tmp_path)
    server = chroma_server_factory(tmp_path / "data")
    common = ["index", str(folder), "--url", server.url, "-c", "crash", "-e", LOGGED_TOY, "--batch-size", "2"]
    log = tmp_path / "run1.jsonl"
    proc = subprocess.Popen(cli_cmd(*common), env=cli_env(MMEMBED_TEST_ENCODE_LOG=str(log),
                                                          MMEMBED_TEST_ENCODE_DELAY="0.15"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(read_encode_log(log)) < 6 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    server.kill()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert f"cannot reach the Chroma server at {server.url}" in err and "Traceback" not in err
    assert "run the same command again to resume" in err and "stopped after" in err

    again = chroma_server_factory(tmp_path / "data", port=server.port)
    before = snapshot(["--url", again.url], "crash")
    assert {want[s] for s in before.values()} == set(before)  # what the crashed server kept is whole
    out = run_cli(*common, MMEMBED_TEST_ENCODE_LOG=str(tmp_path / "run2.jsonl"))
    assert out.returncode == 0, out.stderr
    assert f"{N_IMAGES - len(before)} added, {len(before)} already indexed, 0 skipped" in out.stdout
    assert snapshot(["--url", again.url], "crash") == {rid: source for source, rid in want.items()}
