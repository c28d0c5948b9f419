"""Concurrent writers: several ``mmembed index`` processes, overlapping folders, one server collection."""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

from conftest import ToyEncoder
from mmembed import Store

from .conftest import LOGGED_TOY, ChromaServer, cli_cmd, cli_env, make_captioned_images, read_encode_log

FOLDERS = {
    "a": list(range(0, 30)),
    "b": list(range(15, 45)),
    "c": list(range(30, 48)) + list(range(0, 8)),
}


def test_overlapping_writers_leave_no_duplicates_and_no_losses(chroma_server: ChromaServer, collection_name: str,
                                                               tmp_path: Path) -> None:
    for name, indices in FOLDERS.items():
        make_captioned_images(tmp_path / name, indices)
    union = sorted(set().union(*FOLDERS.values()))
    # the oracle: one uninterrupted writer over the union, in-process
    reference = Store(tmp_path / "reference", encoder=ToyEncoder(), collection="reference")
    make_captioned_images(tmp_path / "union", union)
    from mmembed.sources import scan_folder

    docs = scan_folder(tmp_path / "union")
    want = dict(zip(reference.add([d.item for d in docs], metadatas=[d.metadata for d in docs]).added,
                    [d.metadata["source"] for d in docs]))

    # all writers start together, before the collection exists, so they also race to create it
    procs, logs = {}, {}
    start = threading.Barrier(len(FOLDERS))

    def launch(name: str) -> None:
        logs[name] = tmp_path / f"{name}.jsonl"
        start.wait()
        procs[name] = subprocess.run(
            cli_cmd("index", str(tmp_path / name), "--url", chroma_server.url, "-c", collection_name,
                    "-e", LOGGED_TOY, "--batch-size", "2"),
            env=cli_env(MMEMBED_TEST_ENCODE_LOG=str(logs[name]), MMEMBED_TEST_ENCODE_DELAY="0.15"),
            capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
        )

    threads = [threading.Thread(target=launch, args=(name,)) for name in FOLDERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    added_total = 0
    for name, out in procs.items():
        assert out.returncode == 0, f"writer {name} failed:\n{out.stderr}"
        m = re.search(r"(\d+) added, (\d+) already indexed, (\d+) skipped", out.stdout)
        assert m, out.stdout
        added, unchanged, skipped = map(int, m.groups())
        assert added + unchanged == len(FOLDERS[name]) and skipped == 0  # every input of every writer accounted
        added_total += added
    assert added_total >= len(union)

    # the writers really overlapped in time (otherwise this would not test concurrency)
    spans = [(min(e["t"] for e in read_encode_log(p)), max(e["t"] for e in read_encode_log(p))) for p in logs.values()]
    assert max(s for s, _ in spans) < min(e for _, e in spans), f"writers ran one after another: {spans}"

    store = Store(url=chroma_server.url, encoder=ToyEncoder(), collection=collection_name)
    got = store.collection.get(include=["metadatas"])
    assert len(got["ids"]) == len(set(got["ids"])) == store.count() == len(union)  # no duplicates, no losses
    assert {i: m["source"] for i, m in zip(got["ids"], got["metadatas"])} == want
