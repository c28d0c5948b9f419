from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mmembed import EncoderMismatchError, ImageLoadError, InputError, Store
from mmembed.store import _K_HASH

from conftest import ToyEncoder


def test_add_and_query_text_and_images(tmp_path: Path, toy_encoder: ToyEncoder, image_dir: Path) -> None:
    store = Store(tmp_path / "db", encoder=toy_encoder)
    items = [{"image": image_dir / f"{c}.png", "text": (image_dir / f"{c}.txt").read_text()}
             for c in ("red", "green", "blue")]
    res = store.add(items, metadatas=[{"color": "red"}, {"color": "green", "nested": {"a": 1}}, None])
    assert len(res.added) == 3 and not res.skipped
    assert store.count() == 3
    hits = store.query("the blue sea", k=2)
    assert hits[0].document == "the blue sea"
    assert hits[0].uris == [str(image_dir / "blue.png")]
    assert hits[0].modality == "image+text"
    assert -1.0 <= hits[1].score <= hits[0].score <= 1.0 + 1e-6
    green = store.get([res.added[1]])[0]
    assert green.metadata == {"color": "green", "nested.a": 1}
    # image query finds the same-coloured document
    hits = store.query({"image": image_dir / "red.png"}, k=1)
    assert hits[0].metadata["color"] == "red"


def test_query_on_an_empty_store_and_k_above_the_count(tmp_path: Path, toy_encoder: ToyEncoder) -> None:
    store = Store(tmp_path / "db", encoder=toy_encoder)
    assert store.query("anything", k=3) == []
    store.add(["alpha", "beta"])
    hits = store.query("alpha", k=10)
    assert [h.document for h in hits][:1] == ["alpha"] and len(hits) == 2
    assert store.query("alpha", k=10, where={"nothing": "matches"}) == []


def test_ids_are_content_hashes_and_upsert_is_idempotent(tmp_path: Path, toy_encoder: ToyEncoder) -> None:
    store = Store(tmp_path / "db", encoder=toy_encoder)
    first = store.add(["alpha", "beta"])
    toy_encoder.calls.clear()
    second = store.add(["alpha", "beta", "gamma"])
    assert second.unchanged == first.added
    assert len(second.added) == 1
    assert toy_encoder.calls == [1]  # only the new document was embedded
    assert store.count() == 3
    again = Store(tmp_path / "db", encoder=toy_encoder).add(["alpha"])
    assert again.added == [] and again.unchanged == first.added[:1]


def test_changed_content_under_same_id_is_reembedded(tmp_path: Path, toy_encoder: ToyEncoder) -> None:
    store = Store(tmp_path / "db", encoder=toy_encoder)
    store.add(["old text"], ids=["doc-1"])
    res = store.add(["new text"], ids=["doc-1"])
    assert res.added == ["doc-1"]
    assert store.get(["doc-1"])[0].document == "new text"
    assert store.count() == 1


def test_bad_inputs_raise_naming_the_input_and_store_nothing(tmp_path: Path, toy_encoder: ToyEncoder,
                                                             image_dir: Path) -> None:
    store = Store(tmp_path / "db", encoder=toy_encoder)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageLoadError, match=r"document #1.*broken\.png"):
        store.add(["fine", {"image": tmp_path / "broken.png"}, "also fine"])
    assert store.count() == 0
    with pytest.raises(InputError, match="document #0.*whitespace"):
        store.add(["   "])
    with pytest.raises(InputError, match="ids must be non-empty strings"):
        store.add(["x"], ids=[3])  # type: ignore[list-item]
    with pytest.raises(InputError, match="got 2 ids for 1 items"):
        store.add(["x"], ids=["a", "b"])
    assert store.count() == 0


def test_skip_reports_bad_inputs_and_keeps_the_rest(tmp_path: Path, toy_encoder: ToyEncoder,
                                                    image_dir: Path) -> None:
    store = Store(tmp_path / "db", encoder=toy_encoder)
    res = store.add([{"image": image_dir / "red.png"}, {"image": tmp_path / "missing.png"}, ""], on_error="skip")
    assert len(res.added) == 1
    assert [s.index for s in res.skipped] == [1, 2]
    assert "missing.png" in res.skipped[0].reason and "does not exist" in res.skipped[0].reason
    assert store.count() == 1


def test_metadata_is_sanitised(tmp_path: Path, toy_encoder: ToyEncoder) -> None:
    store = Store(tmp_path / "db", encoder=toy_encoder)
    store.add(["x"], ids=["m"], metadatas=[{"empty": {}, "none": None, "tags": ["a", "b"], "mixed": [1, "a"],
                                            "deep": {"a": {"b": True}}, "path": Path("p")}])
    meta = store.get(["m"])[0].metadata
    assert meta == {"tags": ["a", "b"], "mixed": '[1, "a"]', "deep.a.b": True, "path": "p"}
    with pytest.raises(InputError, match="reserved prefix"):
        store.add(["y"], metadatas=[{_K_HASH: "forged"}])


def test_encoder_mismatch_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "db", encoder=ToyEncoder(name="toy-a")).add(["hello"])
    with pytest.raises(EncoderMismatchError, match="toy-a"):
        Store(tmp_path / "db", encoder=ToyEncoder(name="toy-b")).count()
    with pytest.raises(EncoderMismatchError, match="dim 64"):
        Store(tmp_path / "db", encoder=ToyEncoder(name="toy-a", dim=32)).count()


def test_add_vectors_checks_dimension(tmp_path: Path, toy_encoder: ToyEncoder) -> None:
    store = Store(tmp_path / "db", encoder=toy_encoder)
    with pytest.raises(InputError, match=r"expected \(1, 64\)"):
        store.add_vectors(["a"], np.ones((1, 3)))
    with pytest.raises(InputError, match="NaN"):
        store.add_vectors(["a"], np.full((1, 64), np.nan))
    store.add_vectors(["a"], np.ones((1, 64)), documents=["pre"])
    assert store.query_vector(np.ones(64), k=1)[0].id == "a"


def test_bad_collection_name_and_k(tmp_path: Path, toy_encoder: ToyEncoder) -> None:
    with pytest.raises(InputError, match="cannot open collection"):
        Store(tmp_path / "db", encoder=toy_encoder, collection="x").count()
    store = Store(tmp_path / "db", encoder=toy_encoder)
    with pytest.raises(InputError, match="k must be a positive integer"):
        store.query("x", k=0)
    assert store.query("nothing stored yet") == []


def test_persistence_across_processes(tmp_path: Path, toy_encoder: ToyEncoder) -> None:
    db = tmp_path / "db"
    Store(db, encoder=toy_encoder).add(["persisted across processes"], ids=["p1"])
    tests_dir = Path(__file__).parent
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(tests_dir)!r})
        from conftest import ToyEncoder
        from mmembed import Store
        s = Store({str(db)!r}, encoder=ToyEncoder())
        hit = s.query("persisted", k=1)[0]
        print(hit.id, s.count())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["p1", "1"]
