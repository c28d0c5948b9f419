"""Every public entry point answers bad arguments with mmembed's own error types, naming the argument."""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

import mmembed
from conftest import ToyEncoder
from mmembed import InputError, MMEmbedError, Store, StoreConnectionError, StoreNotFoundError, load_encoder
from mmembed.errors import describe, shorten


def test_load_encoder_with_a_non_name() -> None:
    with pytest.raises(InputError, match=r"load_encoder: name must be .* got 123"):
        load_encoder(123)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="already loaded"):
        load_encoder(ToyEncoder())  # type: ignore[arg-type]


def test_load_encoder_with_an_unknown_device() -> None:
    with pytest.raises(InputError, match=r"device 'gpu' is not a device torch knows"):
        load_encoder("default", device="gpu")
    with pytest.raises(InputError, match=r"device must be a str .* got 0"):
        load_encoder("default", device=0)  # type: ignore[arg-type]


def test_load_encoder_on_an_accelerator_this_machine_lacks() -> None:
    if torch.cuda.is_available():
        assert load_encoder("default", device="cuda").dim == 384
    else:
        with pytest.raises(InputError, match=r"device 'cuda': CUDA is not available"):
            load_encoder("default", device="cuda")


def test_load_encoder_with_an_unsupported_dtype() -> None:
    with pytest.raises(InputError, match=r"dtype 'float8' is not supported; use one of"):
        load_encoder("default", dtype="float8")
    with pytest.raises(InputError, match=r"dtype must be a str .* got 16"):
        load_encoder("default", dtype=16)  # type: ignore[arg-type]


def test_load_reranker_with_a_non_name() -> None:
    with pytest.raises(InputError, match=r"load_reranker: name_or_path must be .* got 1.5"):
        mmembed.load_reranker(1.5)  # type: ignore[arg-type]


def test_batch_size_given_as_text() -> None:
    enc = ToyEncoder()
    with pytest.raises(InputError, match=r"batch_size must be a positive integer, got '2'"):
        enc.encode_documents(["a"], batch_size="2")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"batch_size must be a positive integer, got 0"):
        enc.encode_queries(["a"], batch_size=0)
    assert enc.encode_documents(["a", "b"], batch_size=1).shape == (2, enc.dim)


def test_store_batch_size_given_as_text(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", encoder=ToyEncoder())
    with pytest.raises(InputError, match=r"batch_size must be a positive integer, got '2'"):
        store.add(["a"], batch_size="2")  # type: ignore[arg-type]
    assert store.count() == 0


def test_store_given_a_path_and_a_url(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"give one location for the store, not path and url"):
        Store(tmp_path / "db", url="http://127.0.0.1:8000", encoder=ToyEncoder())
    with pytest.raises(InputError, match=r"port is given without host"):
        Store(tmp_path / "db", port=8000, encoder=ToyEncoder())
    assert not (tmp_path / "db").exists()


def test_store_with_a_non_path_or_encoder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"path must be a directory path, got 42"):
        Store(42, encoder=ToyEncoder())  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"encoder must be an mmembed Encoder, a name or a model directory"):
        Store(tmp_path / "db", encoder=3.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"collection must be a non-empty collection name"):
        Store(tmp_path / "db", encoder=ToyEncoder(), collection=None)  # type: ignore[arg-type]


def test_a_mistyped_path_is_not_created_by_a_lookup(tmp_path: Path) -> None:
    Store(tmp_path / "db", encoder=ToyEncoder()).add(["kept"])
    with pytest.raises(StoreNotFoundError, match=r"database .*dbb does not exist"):
        Store(tmp_path / "dbb", encoder=ToyEncoder(), create=False)
    assert not (tmp_path / "dbb").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreNotFoundError, match=r"holds no mmembed database"):
        Store(tmp_path / "empty", encoder=ToyEncoder(), create=False)
    assert list((tmp_path / "empty").iterdir()) == []
    with pytest.raises(StoreNotFoundError, match=r"collection 'mmembd' does not exist .* existing collections: mmembed"):
        Store(tmp_path / "db", encoder=ToyEncoder(), collection="mmembd", create=False)
    found = Store(tmp_path / "db", encoder=ToyEncoder(), create=False)
    assert found.count() == 1 and found.collection_names() == ["mmembed"]
    assert isinstance(StoreNotFoundError("x"), LookupError)


def test_a_lookup_on_a_client_lists_the_collections() -> None:
    import chromadb

    client = chromadb.EphemeralClient()
    Store(client=client, encoder=ToyEncoder(), collection="notes").add(["n"])
    with pytest.raises(StoreNotFoundError, match=r"'note' does not exist .* existing collections: notes"):
        Store(client=client, encoder=ToyEncoder(), collection="note", create=False)


def test_retrieve_with_a_malformed_where_filter(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", encoder=ToyEncoder())
    store.add(["a red apple"], metadatas=[{"kind": "fruit"}])
    with pytest.raises(InputError, match=r"where filter \{'\$bad': 1\} is not valid"):
        mmembed.retrieve(store, "apple", where={"$bad": 1})
    with pytest.raises(InputError, match=r"where must be a dict"):
        mmembed.retrieve(store, "apple", where="kind = fruit")
    with pytest.raises(InputError, match=r"where filter .* is not valid"):
        store.delete(where={"kind": {"$regex": 3}})
    assert store.count() == 1
    assert [h.document for h in mmembed.retrieve(store, "apple", where={"kind": "fruit"})] == ["a red apple"]


def test_metadata_objects_without_a_text_form_are_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", encoder=ToyEncoder())
    with pytest.raises(InputError, match=r"document #0 metadata key 'owner': cannot store <object object at .*"
                                         r"\(object\)"):
        store.add(["x"], metadatas=[{"owner": object()}])
    with pytest.raises(InputError, match=r"key 'tags': cannot store"):
        store.add(["x"], metadatas=[{"tags": ["a", object()]}])
    assert store.count() == 0
    when, uid = datetime.date(2026, 12, 1), uuid.UUID(int=7)
    store.add(["x"], ids=["x"], metadatas=[{"when": when, "uid": uid, "np": np.int64(3), "path": Path("a/b")}])
    assert store.get(["x"])[0].metadata == {"when": "2026-12-01", "uid": str(uid), "np": 3, "path": "a/b"}


def test_store_connection_error_is_exported() -> None:
    assert mmembed.StoreConnectionError is StoreConnectionError
    assert "StoreConnectionError" in mmembed.__all__ and "StoreNotFoundError" in mmembed.__all__
    assert issubclass(StoreConnectionError, MMEmbedError) and issubclass(StoreConnectionError, ConnectionError)


def test_long_paths_are_shortened_in_the_middle() -> None:
    path = "/data/" + "/".join(f"level-{i:02d}" for i in range(30)) + "/the-file-to-find.png"
    text = describe(Path(path))
    assert len(text) <= 80 and text.startswith("'/data/level-00") and text.endswith("the-file-to-find.png'")
    assert "..." in text
    assert shorten("short") == "short"
    with pytest.raises(InputError, match=r"the-file-to-find\.png"):
        mmembed.coerce({"image": Path(path)}).images[0].load(mmembed.ImagePolicy())
