"""Server mode: the Store and the CLI against a real ``chroma run`` server started by the test."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import ToyEncoder
from mmembed import EncoderMismatchError, InputError, Store
from mmembed.errors import StoreConnectionError

from .conftest import TOY, ChromaServer, free_port, make_captioned_images, run_cli


def test_store_over_http_adds_queries_and_reads_back(chroma_server: ChromaServer, collection_name: str,
                                                    image_dir: Path) -> None:
    store = Store(url=chroma_server.url, encoder=ToyEncoder(), collection=collection_name)
    assert store.query("anything", k=5) == []  # an empty collection answers with nothing, not an error
    items = [{"image": image_dir / f"{c}.png", "text": (image_dir / f"{c}.txt").read_text()}
             for c in ("red", "green", "blue", "yellow")]
    res = store.add(items, metadatas=[{"color": c} for c in ("red", "green", "blue", "yellow")])
    assert len(res.added) == 4 and store.count() == 4
    assert len(store.query("the blue sea", k=50)) == 4  # k above the count gives every record
    hit = store.query("the blue sea", k=1)[0]
    assert hit.document == "the blue sea" and hit.metadata == {"color": "blue"}
    assert hit.uris == [str(image_dir / "blue.png")] and hit.modality == "image+text"
    # a second client (host/port form) sees the same records, and re-adding embeds nothing
    encoder = ToyEncoder()
    other = Store(host=chroma_server.host, port=chroma_server.port, encoder=encoder, collection=collection_name)
    assert sorted(other.ids()) == sorted(res.added)
    again = other.add(items)
    assert again.added == [] and sorted(again.unchanged) == sorted(res.added) and encoder.calls == []


def test_server_data_survives_a_server_restart(chroma_server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = chroma_server_factory(tmp_path / "data")
    store = Store(url=server.url, encoder=ToyEncoder(), collection="restart")
    ids = store.add(["kept across restarts", "second record"]).added
    server.stop()
    with pytest.raises(StoreConnectionError, match=f"cannot reach the Chroma server at {server.url}"):
        Store(url=server.url, encoder=ToyEncoder(), collection="restart").count()
    again = chroma_server_factory(tmp_path / "data", port=server.port)
    reopened = Store(url=again.url, encoder=ToyEncoder(), collection="restart")
    assert sorted(reopened.ids()) == sorted(ids)
    assert reopened.query("kept across", k=1)[0].document == "kept across restarts"


def test_server_collection_refuses_another_encoder(chroma_server: ChromaServer, collection_name: str) -> None:
    Store(url=chroma_server.url, encoder=ToyEncoder(name="toy-a"), collection=collection_name).add(["hello"])
    with pytest.raises(EncoderMismatchError, match="toy-a"):
        Store(url=chroma_server.url, encoder=ToyEncoder(name="toy-b"), collection=collection_name).count()
    with pytest.raises(EncoderMismatchError, match="dim 64"):
        Store(url=chroma_server.url, encoder=ToyEncoder(name="toy-a", dim=32), collection=collection_name).add(["x"])


def test_a_server_that_never_answers_is_reported_within_the_timeout() -> None:
    """A socket that accepts connections and then says nothing (a hung server): chromadb's client alone
    would wait forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreConnectionError, match=f"the Chroma server at {url} did not answer within 1 s"):
            Store(url=url, encoder=ToyEncoder(), timeout=1)
        assert time.monotonic() - t0 < 10
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
    for bad in (0, -1, "5", True):
        with pytest.raises(InputError, match="timeout must be a positive number"):
            Store(url=url, encoder=ToyEncoder(), timeout=bad)


def test_a_server_that_hangs_mid_session_is_reported_and_the_store_recovers(chroma_server_factory,  # type: ignore[no-untyped-def]
                                                                             collection_name: str) -> None:
    server = chroma_server_factory()
    store = Store(url=server.url, encoder=ToyEncoder(), collection=collection_name, timeout=2)
    # the per-request limit reaches chromadb's private HTTP session: this fails if a chromadb release moves it
    assert store._client._server._session.timeout.read == 2.0
    store.add(["alpha", "beta"])
    os.kill(server.proc.pid, signal.SIGSTOP)  # the process stays, its socket accepts, nothing answers
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreConnectionError, match=f"cannot reach the Chroma server at {server.url}"):
            store.query("alpha", k=1)
        assert time.monotonic() - t0 < 15
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert store.query("alpha", k=1)[0].document == "alpha" and store.count() == 2


def test_unreachable_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreConnectionError, match=f"cannot reach the Chroma server at {url}"):
        Store(url=url, encoder=ToyEncoder()).count()
    for bad in ("ftp://example.org", "127.0.0.1:8000", "http://", "http://127.0.0.1:notaport"):
        with pytest.raises(InputError, match="http|port"):
            Store(url=bad, encoder=ToyEncoder())


def test_cli_index_search_info_against_server(chroma_server: ChromaServer, collection_name: str,
                                              tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    make_captioned_images(folder, range(6))
    out = run_cli("index", str(folder), "--url", chroma_server.url, "-c", collection_name, "-e", TOY)
    assert out.returncode == 0, out.stderr
    assert "6 added, 0 already indexed, 0 skipped" in out.stdout and "now holds 6 documents" in out.stdout
    # --host/--port form reaches the same collection; nothing is re-embedded
    out = run_cli("index", str(folder), "--host", chroma_server.host, "--port", str(chroma_server.port),
                  "-c", collection_name, "-e", TOY)
    assert out.returncode == 0, out.stderr
    assert "0 added, 6 already indexed, 0 skipped" in out.stdout
    out = run_cli("search", "picture number 4", "--url", chroma_server.url, "-c", collection_name, "-e", TOY,
                  "-k", "2", "--json")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert hits[0]["document"] == "picture number 4" and hits[0]["metadata"] == {"source": "img-00004.png"}
    out = run_cli("info", "--url", chroma_server.url, "-c", collection_name, "-e", TOY)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["count"] == 6
    store = Store(url=chroma_server.url, encoder=ToyEncoder(), collection=collection_name)
    assert store.count() == 6


def test_cli_reports_an_unreachable_server_without_a_traceback(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    make_captioned_images(folder, range(2))
    url = f"http://127.0.0.1:{free_port()}"
    out = run_cli("index", str(folder), "--url", url, "-e", TOY)
    assert out.returncode == 2
    assert f"cannot reach the Chroma server at {url}" in out.stderr
    assert "Traceback" not in out.stderr


# ---- both frameworks' retrievers against the server --------------------------------------------------------------
def test_langchain_retriever_against_server(chroma_server: ChromaServer, collection_name: str,
                                            image_dir: Path) -> None:
    from langchain_core.documents import Document

    from langchain_mmembed import MMEmbedRetriever

    retriever = MMEmbedRetriever(url=chroma_server.url, collection=collection_name, encoder=ToyEncoder(), k=2)
    docs = [Document(page_content=(image_dir / f"{c}.txt").read_text(), metadata={"image": str(image_dir / f"{c}.png"),
                                                                                  "color": c})
            for c in ("red", "green", "blue", "yellow")]
    res = retriever.add_documents(docs)
    assert len(res.added) == 4
    found = retriever.invoke("a yellow banana")
    assert found[0].page_content == "a yellow banana" and found[0].metadata["color"] == "yellow"
    assert found[0].metadata["image"] == str(image_dir / "yellow.png") and len(found) == 2
    by_image = retriever.invoke({"image": str(image_dir / "green.png")}, k=1)
    assert by_image[0].metadata["color"] == "green"
    # a second retriever (a second process would be the same) sees the server's records
    assert Store(url=chroma_server.url, encoder=ToyEncoder(), collection=collection_name).count() == 4


def test_llamaindex_retriever_against_server(chroma_server: ChromaServer, collection_name: str,
                                             tmp_path: Path) -> None:
    from llama_index.core.schema import ImageNode, QueryBundle

    from llama_index.retrievers.mmembed import MMEmbedRetriever

    folder = tmp_path / "pics"
    paths = make_captioned_images(folder, range(5))
    out = run_cli("index", str(folder), "--url", chroma_server.url, "-c", collection_name, "-e", TOY)
    assert out.returncode == 0, out.stderr
    retriever = MMEmbedRetriever(host=chroma_server.host, port=chroma_server.port, collection=collection_name,
                                 encoder=ToyEncoder(), similarity_top_k=2)
    nodes = retriever.retrieve("picture number 3")
    assert len(nodes) == 2 and isinstance(nodes[0].node, ImageNode)
    assert nodes[0].node.image_path == str(paths[3]) and nodes[0].node.metadata["source"] == "img-00003.png"
    nodes = retriever.retrieve(QueryBundle(query_str="", image_path=str(paths[1])))
    assert nodes[0].node.image_path == str(paths[1])
