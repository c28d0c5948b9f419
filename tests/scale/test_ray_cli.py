"""``mmembed index --ray`` as a user runs it, against a real ``chroma run`` server:

* ``--ray auto`` with no cluster around starts a local one, says so, and writes exactly the records (ids,
  metadata, documents, uris; vectors within 1-cos < 1e-6) that the single-process ``mmembed index`` writes
  with the real default model, skipping and reporting the same bad file;
* a cluster of two ``ray start`` processes (head + worker) joined through ``RAY_ADDRESS``, with one encoder
  actor on each node.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import numpy as np

from conftest import ToyEncoder
from mmembed import Store

from .conftest import ChromaServer, RayNodes, cli_cmd, make_captioned_images, ray_env
from .ray_encoders import read_log


def run_cli(*args: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process group: if it hangs, the group (with a Ray cluster it started) is killed."""
    proc = subprocess.Popen(cli_cmd(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"mmembed {' '.join(args)} did not finish within {timeout}s:\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def records(server: ChromaServer, collection: str) -> dict[str, tuple]:
    import chromadb

    col = chromadb.HttpClient(host=server.host, port=server.port).get_collection(collection)
    got = col.get(include=["embeddings", "metadatas", "documents", "uris"])
    assert len(got["ids"]) == len(set(got["ids"]))
    return {rid: (meta, doc, uri, np.asarray(emb, dtype=np.float64))
            for rid, meta, doc, uri, emb in zip(got["ids"], got["metadatas"], got["documents"], got["uris"],
                                                got["embeddings"])}


def test_ray_auto_writes_what_the_single_process_index_writes(chroma_server: ChromaServer, tmp_path: Path,
                                                              collection_name: str) -> None:
    folder = tmp_path / "imgs"
    make_captioned_images(folder, range(10))
    (folder / "sub").mkdir()
    (folder / "sub" / "broken.png").write_bytes(b"this is not an image")
    env = ray_env()
    single = run_cli("index", str(folder), "--url", chroma_server.url, "-c", collection_name + "-single", env=env)
    assert single.returncode == 0, single.stderr
    on_ray = run_cli("index", str(folder), "--url", chroma_server.url, "-c", collection_name, "--ray", "auto",
                     "-b", "4", env=env)
    assert on_ray.returncode == 0, on_ray.stderr
    assert "ray: started a local Ray cluster (2 CPUs)" in on_ray.stderr
    # the same summary and the same skip report
    assert single.stdout.splitlines()[0].startswith("10 added, 0 already indexed, 1 skipped")
    assert on_ray.stdout.splitlines()[0].startswith("10 added, 0 already indexed, 1 skipped")
    skip_line = [line for line in single.stderr.splitlines() if line.startswith("  skipped ")]
    assert skip_line and "broken.png" in skip_line[0]
    assert skip_line == [line for line in on_ray.stderr.splitlines() if line.startswith("  skipped ")]
    a, b = records(chroma_server, collection_name + "-single"), records(chroma_server, collection_name)
    assert sorted(a) == sorted(b) and len(a) == 10
    for rid in a:
        assert a[rid][:3] == b[rid][:3]
        x, y = a[rid][3], b[rid][3]
        assert 1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y)) < 1e-6
    # the collection records the indexed folder, like the single-process path
    assert Store(url=chroma_server.url, encoder="default", collection=collection_name).roots == [folder.resolve()]


def test_bad_ray_invocations_fail_clearly(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    make_captioned_images(folder, range(2))
    no_url = run_cli("index", str(folder), "--ray", "auto", env=ray_env())
    assert no_url.returncode == 2 and "--ray writes to a Chroma server" in no_url.stderr
    strict = run_cli("index", str(folder), "--ray", "auto", "--url", "http://127.0.0.1:9", "--strict", env=ray_env())
    assert strict.returncode == 2 and "--strict cannot be combined with --ray" in strict.stderr


def test_a_head_and_a_worker_process_share_the_work(ray_nodes: RayNodes, chroma_server: ChromaServer,
                                                    tmp_path: Path, collection_name: str) -> None:
    folder = tmp_path / "imgs"
    make_captioned_images(folder, range(48))
    # 12 batches of 0.5 s: more work than one actor finishes while the other is still starting on a busy machine
    env = dict(ray_nodes.env, RAY_ADDRESS=ray_nodes.address, MMEMBED_TEST_ENCODE_DELAY="0.5")
    out = run_cli("index", str(folder), "--url", chroma_server.url, "-c", collection_name, "--ray", "auto",
                  "--encoder", "scale.ray_encoders:logged", "--ray-actors", "2", "-b", "4", env=env)
    assert out.returncode == 0, out.stderr + ray_nodes.logs()
    assert f"ray: joined the Ray cluster at {ray_nodes.address} (2 nodes, 2 CPUs)" in out.stderr
    assert "2 encoder actor(s) x 0.75 CPU" in out.stderr
    assert out.stdout.startswith("48 added, 0 already indexed, 0 skipped")
    log = read_log(Path(ray_nodes.env["MMEMBED_TEST_ENCODE_LOG"]))
    actors = {(e["node"], e["pid"]) for e in log}
    assert len({node for node, _ in actors}) == 2, actors  # one actor on each node
    assert sum(len(e["items"]) for e in log if e["event"] == "end") == 48
    # the same records as the single-process path with the same encoder
    ref = Store(url=chroma_server.url, encoder=ToyEncoder(), collection=collection_name + "-ref")
    from mmembed.sources import read_source

    docs = read_source(folder)
    ref.add([d.item for d in docs], metadatas=[d.metadata for d in docs])
    a, b = records(chroma_server, collection_name + "-ref"), records(chroma_server, collection_name)
    assert sorted(a) == sorted(b) and all(a[r][:3] == b[r][:3] for r in a)
    # a re-run against the same cluster embeds nothing
    again = run_cli("index", str(folder), "--url", chroma_server.url, "-c", collection_name, "--ray", "auto",
                    "--encoder", "scale.ray_encoders:logged", "--ray-actors", "2", "-b", "4", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("0 added, 48 already indexed, 0 skipped")
    assert len(read_log(Path(ray_nodes.env["MMEMBED_TEST_ENCODE_LOG"]))) == len(log)
