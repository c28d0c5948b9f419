"""The directories a collection may reference are recorded on it (the search page and rerankers read them)."""

from __future__ import annotations

from pathlib import Path

from mmembed.store import Store


def test_roots_are_recorded_once_in_order_and_survive_reopening(tmp_path: Path, toy_encoder) -> None:
    db = tmp_path / "db"
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x.png").write_bytes(b"")
    store = Store(db, encoder=toy_encoder, collection="docs")
    assert store.roots == []
    store.record_roots([a / "x.png", b])  # a file counts as its folder
    store.record_roots([a])  # already there: no duplicate
    assert store.roots == [a.resolve(), b.resolve()]
    reopened = Store(db, encoder=toy_encoder, collection="docs")
    assert reopened.roots == [a.resolve(), b.resolve()]
    # the collection keeps its encoder record and cosine space after the metadata update
    assert reopened.collection.metadata["mmembed:encoder"] == toy_encoder.info()["encoder"]
    reopened.add(["hello"])
    assert reopened.query("hello", k=1)[0].score > 0.99
