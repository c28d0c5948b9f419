"""Ray indexing under failure, on a real local Ray cluster (2 logical CPUs) and real ``chroma run`` servers:
an encoder actor SIGKILLed mid-batch, the Chroma server dying mid-run, concurrent jobs, a manifest source.

The encoder is the toy encoder (tests/conftest.py) logging each batch from inside the actor process
(scale/ray_encoders.py), so a test knows which process is embedding at a given moment.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ToyEncoder
from mmembed import Store
from mmembed.errors import StoreConnectionError
from mmembed.scale import RayIndexError, index_with_ray

from .conftest import ChromaServer, make_captioned_images
from .ray_encoders import LoggedEncoder, busy_pids, read_log

pytestmark = pytest.mark.usefixtures("local_ray")


def expected_records(server: ChromaServer, source: Path, collection: str) -> dict[str, dict[str, Any]]:
    """What the single-process path writes for ``source``: id -> metadata (the reference for every test)."""
    from mmembed.sources import read_source

    docs = read_source(source)
    store = Store(url=server.url, encoder=ToyEncoder(), collection=collection)
    res = store.add([d.item for d in docs], ids=[d.id for d in docs] if any(d.id for d in docs) else None,
                    metadatas=[d.metadata for d in docs], on_error="skip")
    got = store.collection.get(include=["metadatas"])
    assert len(got["ids"]) == len(res.added)
    return dict(zip(got["ids"], got["metadatas"]))


def stored(server: ChromaServer, collection: str) -> dict[str, dict[str, Any]]:
    got = Store(url=server.url, encoder=ToyEncoder(), collection=collection).collection.get(include=["metadatas"])
    assert len(got["ids"]) == len(set(got["ids"]))
    return dict(zip(got["ids"], got["metadatas"]))


class Run(threading.Thread):
    """index_with_ray in a background thread, so the test can act while it runs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.kwargs = kwargs
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = index_with_ray(**self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_an_actor_killed_mid_batch_loses_and_duplicates_nothing(chroma_server: ChromaServer, tmp_path: Path,
                                                               collection_name: str) -> None:
    folder = tmp_path / "imgs"
    make_captioned_images(folder, range(32))
    expected = expected_records(chroma_server, folder, collection_name + "-ref")
    log = tmp_path / "encode.jsonl"
    run = Run(sources=folder, store_url=chroma_server.url, collection=collection_name,
              encoder=LoggedEncoder(log, delay=0.4), concurrency=2, batch_size=4, progress=False)
    run.start()
    store = Store(url=chroma_server.url, encoder=ToyEncoder(), collection=collection_name)
    # the kill lands while work is in flight: records already written, and the victim inside a batch
    wait_for(lambda: run.error is not None or (store.count() >= 8 and busy_pids(log)), 240,
             "records written and an actor busy")
    assert run.error is None, run.error
    victim = sorted(busy_pids(log))[0]
    written_before = store.count()
    os.kill(victim, signal.SIGKILL)
    events_at_kill = read_log(log)
    run.join(timeout=300)
    assert not run.is_alive(), "the run did not finish after the actor was killed"
    assert run.error is None, run.error
    assert 0 < written_before < 32
    # the victim was embedding when it died: its last event is a start that never ended
    mine = [e for e in read_log(log) if e["pid"] == victim]
    assert mine[-1]["event"] == "start" and mine == [e for e in events_at_kill if e["pid"] == victim]
    # Ray restarted the actor (a new process) and re-ran the lost batch
    lost = set(mine[-1]["items"])
    later = [e for e in read_log(log) if e["pid"] != victim and e["event"] == "end" and e["t"] > mine[-1]["t"]]
    assert lost <= {item for e in later for item in e["items"]}
    # complete, no losses, no duplicates, same ids and metadata as the single-process path
    assert stored(chroma_server, collection_name) == expected
    res = run.result
    assert len(res.added) + len(res.unchanged) == 32 and not res.skipped and res.count == 32


def test_a_dead_chroma_server_stops_the_run_clearly_and_a_rerun_resumes(chroma_server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "imgs"
    make_captioned_images(folder, range(40))
    server = chroma_server_factory(tmp_path / "data")
    expected = expected_records(server, folder, "reference")
    run = Run(sources=folder, store_url=server.url, collection="resume", encoder=LoggedEncoder(tmp_path / "log", 0.3),
              concurrency=2, batch_size=4, progress=False)
    run.start()
    store = Store(url=server.url, encoder=ToyEncoder(), collection="resume")
    wait_for(lambda: run.error is not None or store.count() >= 8, 240, "records written")
    assert run.error is None, run.error
    server.kill()
    run.join(timeout=180)
    assert not run.is_alive(), "the run did not stop after the server died"
    err = run.error
    assert isinstance(err, RayIndexError), repr(err)
    assert isinstance(err.cause, StoreConnectionError)
    assert f"cannot reach the Chroma server at {server.url}" in str(err)
    done_before = len(err.partial.added)
    assert 0 < err.partial.total == 40
    # restart the server on its data: what was written is there, and the same call finishes the job
    again = chroma_server_factory(tmp_path / "data", port=server.port)
    kept = set(stored(again, "resume"))
    assert len(kept) >= 8 and kept <= set(expected)
    res = index_with_ray(folder, store_url=again.url, collection="resume", encoder=LoggedEncoder(tmp_path / "log2"),
                         concurrency=2, batch_size=4, progress=False)
    assert stored(again, "resume") == expected
    assert len(res.unchanged) >= len(kept) >= done_before and len(res.added) == 40 - len(res.unchanged)
    # nothing already stored was embedded again
    embedded = {item for e in read_log(tmp_path / "log2") if e["event"] == "end" for item in e["items"]}
    assert len(embedded) == len(res.added)


def test_concurrent_jobs_on_the_same_folder_write_each_record_once(chroma_server: ChromaServer, tmp_path: Path,
                                                                 collection_name: str) -> None:
    folder = tmp_path / "imgs"
    make_captioned_images(folder, range(16))
    expected = expected_records(chroma_server, folder, collection_name + "-ref")
    runs = [Run(sources=folder, store_url=chroma_server.url, collection=collection_name,
                encoder=LoggedEncoder(tmp_path / f"log{i}", 0.1), concurrency=1, num_cpus=0.5, batch_size=4,
                progress=False) for i in range(2)]
    for r in runs:
        r.start()
    for r in runs:
        r.join(timeout=300)
        assert r.error is None, r.error
    assert stored(chroma_server, collection_name) == expected
    for r in runs:
        assert len(r.result.added) + len(r.result.unchanged) == 16


def test_a_manifest_with_ids_metadata_and_a_bad_row_matches_the_single_process_path(
        chroma_server: ChromaServer, tmp_path: Path, collection_name: str) -> None:
    folder = tmp_path / "imgs"
    make_captioned_images(folder, range(6))
    (folder / "broken.png").write_bytes(b"not an image")
    rows = [{"image": f"imgs/img-{i:05d}.png", "text": f"row {i}", "metadata": {"n": i, "tags": ["a", "b"]}}
            for i in range(6)]
    rows += [{"id": "given-id", "text": "only text", "lang": "en"}, {"image": "imgs/broken.png", "text": "bad"},
             {"image": "imgs/missing.png"}]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    expected = expected_records(chroma_server, manifest, collection_name + "-ref")
    res = index_with_ray(manifest, store_url=chroma_server.url, collection=collection_name, encoder=ToyEncoder(),
                         batch_size=3, progress=False)
    assert stored(chroma_server, collection_name) == expected
    assert len(res.added) == 7 and [s.index for s in res.skipped] == [7, 8]
    assert "broken.png" in res.skipped[0].reason and "does not exist" in res.skipped[1].reason
    assert res.origins[7] == "manifest.jsonl:8"
    # the same rows as a Ray Dataset (e.g. read from Parquet): the same records
    import ray

    rows[0]["metadata"] = {"n": 0, "tags": ["a", "b"]}
    for row in rows:
        for key in ("image", "images"):
            if key in row:
                row[key] = str(tmp_path / row[key])
    from_dataset = index_with_ray(ray.data.from_items(rows[:7]), store_url=chroma_server.url,
                                  collection=collection_name + "-ds", encoder=ToyEncoder(), batch_size=3,
                                  progress=False)
    assert len(from_dataset.added) == 7
    assert stored(chroma_server, collection_name + "-ds") == expected


def test_replace_changed_on_ray_removes_the_outdated_record(chroma_server: ChromaServer, tmp_path: Path,
                                                            collection_name: str) -> None:
    folder = tmp_path / "imgs"
    make_captioned_images(folder, range(6))
    first = index_with_ray(folder, store_url=chroma_server.url, collection=collection_name, encoder=ToyEncoder(),
                           batch_size=4, replace_by="source", progress=False)
    (folder / "img-00003.txt").write_text("an edited caption")
    second = index_with_ray(folder, store_url=chroma_server.url, collection=collection_name, encoder=ToyEncoder(),
                            batch_size=4, replace_by="source", progress=False)
    assert len(second.added) == 1 and len(second.unchanged) == 5 and len(second.replaced) == 1
    assert second.replaced[0] in first.added and second.count == 6
    assert stored(chroma_server, collection_name) == expected_records(chroma_server, folder, collection_name + "-ref")


def test_a_plan_that_would_starve_the_cluster_is_refused_before_any_work(chroma_server: ChromaServer,
                                                                        tmp_path: Path, collection_name: str) -> None:
    """Two 1-CPU actors on this 2-CPU cluster would leave the decode tasks no CPU (measured: a 300 s stall)."""
    from mmembed.errors import InputError

    folder = tmp_path / "imgs"
    make_captioned_images(folder, range(2))
    started = time.monotonic()
    with pytest.raises(InputError, match="stall"):
        index_with_ray(folder, store_url=chroma_server.url, collection=collection_name, encoder=ToyEncoder(),
                       concurrency=2, num_cpus=1, progress=False)
    assert time.monotonic() - started < 30
    assert collection_name not in [c.name for c in Store(url=chroma_server.url, encoder=ToyEncoder(),
                                                         collection=collection_name + "-x")._client.list_collections()]
