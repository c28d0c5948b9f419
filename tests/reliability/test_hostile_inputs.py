"""Hostile inputs, one case each: a clear error naming the input, nothing stored from the failed item, and with
``on_error="skip"`` the rest of the batch kept. Real files on disk, a real (embedded or server) Chroma."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import ToyEncoder, make_png
from mmembed import EncoderMismatchError, ImageLoadError, InputError, Store
from mmembed.inputs import MAX_TEXT_CHARS

from .conftest import TOY, ChromaServer, make_captioned_images, run_cli

GOOD = ["a first good document", "a second good document"]


# ---- builders of hostile files ------------------------------------------------------------------------
def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A real decompression bomb: a 1-bit PNG of ``width x height`` zero pixels, a few KB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write(tmp: Path, name: str, data: bytes) -> dict[str, Any]:
    (tmp / name).write_bytes(data)
    return {"image": tmp / name}


def symlink_loop(tmp: Path) -> dict[str, Any]:
    os.symlink(tmp / "loop-b.png", tmp / "loop-a.png")
    os.symlink(tmp / "loop-a.png", tmp / "loop-b.png")
    return {"image": tmp / "loop-a.png"}


def directory(tmp: Path) -> dict[str, Any]:
    (tmp / "folder.png").mkdir()
    return {"image": tmp / "folder.png"}


def interleaved_with_one_bad_image(tmp: Path) -> dict[str, Any]:
    good = make_png(tmp / "fine.png", (1, 2, 3))
    (tmp / "half.jpg").write_bytes(jpeg_bytes()[:300])
    return {"images": [good, tmp / "half.jpg"], "text": "two images, one broken"}


def non_utf8_file_name(tmp: Path) -> dict[str, Any]:
    raw = os.fsencode(tmp) + b"/caf\xe9.png"  # latin-1 name on a UTF-8 system
    with open(raw, "wb") as fh:
        fh.write(png_bytes())
    return {"image": Path(os.fsdecode(raw))}


# name -> (build(tmp) -> item, error class, regex the message must match besides "document #1")
ITEM_CASES: dict[str, tuple[Callable[[Path], Any], type[Exception], str]] = {
    "png-truncated": (lambda t: write(t, "cut.png", png_bytes()[:60]), ImageLoadError, r"cut\.png.*truncated"),
    "png-corrupt": (lambda t: write(t, "bad.png", png_bytes()[:41] + bytes(range(256)) * 2), ImageLoadError,
                    r"bad\.png.*(corrupt|broken)"),
    "jpeg-truncated": (lambda t: write(t, "cut.jpg", jpeg_bytes()[:400]), ImageLoadError, r"cut\.jpg.*truncated"),
    "jpeg-corrupt": (lambda t: write(t, "bad.jpg", jpeg_bytes()[:4] + bytes(range(256))), ImageLoadError,
                     r"bad\.jpg.*(corrupt|truncated)"),
    "zero-byte-file": (lambda t: write(t, "empty.png", b""), ImageLoadError, r"empty\.png.*0 bytes"),
    "bomb-over-pillow-limit": (lambda t: write(t, "bomb.png", png_bomb(16000, 16000)), ImageLoadError,
                               r"bomb\.png.*decompression bomb"),
    "bomb-over-policy-limit": (lambda t: write(t, "bomb.png", png_bomb(9000, 9000)), ImageLoadError,
                               r"bomb\.png.*decompression bomb.*81000000 pixels"),
    "pdf": (lambda t: write(t, "paper.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"), ImageLoadError,
            r"paper\.pdf.*PDF document"),
    "svg": (lambda t: write(t, "logo.svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
                                          b'width="8" height="8"><rect width="8" height="8"/></svg>'),
            ImageLoadError, r"logo\.svg.*SVG"),
    "missing-path": (lambda t: {"image": t / "nowhere.png"}, ImageLoadError, r"nowhere\.png.*does not exist"),
    "directory-as-image": (directory, ImageLoadError, r"folder\.png.*is a directory"),
    "symlink-loop": (symlink_loop, ImageLoadError, r"loop-a\.png.*symlink loop"),
    "one-bad-image-in-interleaved": (interleaved_with_one_bad_image, ImageLoadError, r"half\.jpg.*truncated"),
    "non-utf8-file-name": (non_utf8_file_name, InputError, r"caf.*not valid UTF-8"),
    "empty-text": (lambda t: "", InputError, r"empty"),
    "whitespace-text": (lambda t: " \n\t  ", InputError, r"whitespace"),
    "text-over-the-limit": (lambda t: "x" * (MAX_TEXT_CHARS + 1), InputError, rf"over the {MAX_TEXT_CHARS}"),
    "text-with-lone-surrogate": (lambda t: "caf\udce9", InputError, r"not valid Unicode"),
    "empty-dict": (lambda t: {}, InputError, r"empty"),
    "unknown-type": (lambda t: 3.5, InputError, r"cannot use 3\.5"),
    "file-url": (lambda t: {"image": "file:///etc/passwd"}, ImageLoadError, r"file:// scheme is not supported"),
}


def assert_only_good_stored(store: Store, good_ids: list[str]) -> None:
    assert sorted(store.ids()) == sorted(good_ids)
    assert sorted(h.document for h in store.get(good_ids)) == sorted(GOOD)


@pytest.mark.parametrize("case", list(ITEM_CASES))
def test_hostile_item_is_refused_by_name_and_skippable(case: str, tmp_path: Path) -> None:
    build, error, pattern = ITEM_CASES[case]
    bad = build(tmp_path)
    store = Store(tmp_path / "db", encoder=ToyEncoder())
    with pytest.raises(error, match=rf"document #1.*{pattern}") as info:
        store.add([GOOD[0], bad, GOOD[1]])
    assert "Traceback" not in str(info.value) and len(str(info.value)) < 600
    assert store.count() == 0  # on_error="raise": the failing chunk writes nothing
    res = store.add([GOOD[0], bad, GOOD[1]], on_error="skip")
    assert [s.index for s in res.skipped] == [1]
    assert re.search(pattern, res.skipped[0].reason, re.S), res.skipped[0].reason
    assert len(res.added) == 2
    assert_only_good_stored(store, res.added)


# ---- ids, metadata and vectors --------------------------------------------------------------------------
@pytest.mark.parametrize("bad_id", [3, ["a"], b"raw-bytes", "", "   ", 1.5, ("a",)],
                         ids=["int", "list", "bytes", "empty", "blank", "float", "tuple"])
def test_non_string_ids_are_refused_by_position(bad_id: Any, tmp_path: Path) -> None:
    store = Store(tmp_path / "db", encoder=ToyEncoder())
    with pytest.raises(InputError, match=r"document #1 .*ids must be non-empty strings"):
        store.add([GOOD[0], "middle", GOOD[1]], ids=["g0", bad_id, "g1"])
    assert store.count() == 0
    res = store.add([GOOD[0], "middle", GOOD[1]], ids=["g0", bad_id, "g1"], on_error="skip")
    assert res.added == ["g0", "g1"] and [s.index for s in res.skipped] == [1]
    assert_only_good_stored(store, ["g0", "g1"])
    with pytest.raises(InputError, match="must be a non-empty string"):
        store.add_vectors(["ok", bad_id], np.ones((2, 64)))
    assert store.count() == 2


@pytest.mark.parametrize("meta, pattern", [
    (["not", "a", "dict"], r"document #1 metadata must be a dict"),
    ({"$where": 1}, r"document #1 metadata key '\$where' is reserved by Chroma"),
    ({"#document": "x"}, r"key '#document' is reserved by Chroma"),
    ({"chroma:document": "x"}, r"key 'chroma:document' is reserved by Chroma"),
    ({"mmembed:hash": "forged"}, r"reserved prefix 'mmembed:'"),
    ({"a.b": 1, "a": {"b": 2}}, r"key 'a\.b' appears twice"),
    ({"": "no key"}, r"empty key"),
], ids=["list", "dollar-key", "hash-key", "chroma-document", "mmembed-prefix", "flattened-collision", "empty-key"])
def test_unstorable_metadata_is_refused_by_name_and_skippable(meta: Any, pattern: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "db", encoder=ToyEncoder())
    with pytest.raises(InputError, match=pattern):
        store.add([GOOD[0], "middle", GOOD[1]], metadatas=[None, meta, None])
    assert store.count() == 0
    res = store.add([GOOD[0], "middle", GOOD[1]], metadatas=[None, meta, None], on_error="skip")
    assert [s.index for s in res.skipped] == [1] and len(res.added) == 2
    assert_only_good_stored(store, res.added)


def test_nested_empty_and_awkward_metadata_is_stored_flat_over_http(chroma_server: ChromaServer,
                                                                     collection_name: str) -> None:
    store = Store(url=chroma_server.url, encoder=ToyEncoder(), collection=collection_name)
    metas = [
        {"a": {"b": {"c": 1}}, "empty": {}, "none": None, "nothing": [], "tags": {"x", "y"}},
        {},
        {"big": 2**70, "neg": -(2**63) - 1, "name": "caf\udce9.png", "k\udcff": "v", "nan": float("nan"),
         "mixed": [1, "a", None], "np": np.float32(0.5), "path": Path("x/y")},
    ]
    res = store.add(["nested", "empty", "awkward"], metadatas=metas)
    assert not res.skipped
    got = {h.document: h.metadata for h in store.get(res.added)}
    assert got["nested"] == {"a.b.c": 1, "tags": ["x", "y"]}
    assert got["empty"] == {}
    assert got["awkward"] == {"big": str(2**70), "neg": str(-(2**63) - 1), "name": "caf\\udce9.png",
                              "k\\udcff": "v", "nan": "nan", "mixed": '[1, "a"]', "np": 0.5, "path": "x/y"}


def test_one_megabyte_text_round_trips(tmp_path: Path) -> None:
    text = ("lorem ipsum dolor sit amet " * 40_000)[:1_000_000] + " the needle"
    store = Store(tmp_path / "db", encoder=ToyEncoder())
    res = store.add([text, "short neighbour"])
    assert len(res.added) == 2
    assert store.get([res.added[0]])[0].document == text
    assert store.add([text]).unchanged == [res.added[0]]  # hashed, not re-embedded


@pytest.mark.parametrize("vectors, pattern", [
    (np.ones((2, 63)), r"shape \(2, 63\), expected \(2, 64\)"),
    (np.ones((1, 64)), r"shape \(1, 64\), expected \(2, 64\)"),
    (np.ones(128), r"shape \(128,\), expected \(2, 64\)"),
    ([[1.0] * 64, [1.0] * 3], r"numeric \(n, dim\) array"),
    ([["a"] * 64, ["b"] * 64], r"numeric \(n, dim\) array"),
    (np.full((2, 64), np.inf), r"NaN or infinite"),
], ids=["too-narrow", "too-few-rows", "flat", "ragged", "strings", "infinite"])
def test_wrong_embeddings_are_refused_and_nothing_is_written(vectors: Any, pattern: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "db", encoder=ToyEncoder())
    with pytest.raises(InputError, match=pattern):
        store.add_vectors(["a", "b"], vectors)
    with pytest.raises(InputError, match="given more than once"):
        store.add_vectors(["a", "a"], np.ones((2, 64)))
    with pytest.raises(InputError, match="got 1 documents for 2 ids"):
        store.add_vectors(["a", "b"], np.ones((2, 64)), documents=["only one"])
    with pytest.raises(InputError, match="dimension 63, expected 64"):
        store.query_vector(np.ones(63))
    assert store.count() == 0


def test_encoder_returning_the_wrong_dimension_writes_nothing(tmp_path: Path) -> None:
    class Liar(ToyEncoder):
        def _encode_batch(self, items: Any, *, instruction: Any, is_query: bool) -> np.ndarray:
            return np.ones((len(items), self.dim - 1), dtype=np.float32)

    store = Store(tmp_path / "db", encoder=Liar())
    with pytest.raises(RuntimeError, match=r"returned shape \(2, 63\), expected \(2, 64\)"):
        store.add(GOOD)
    assert store.count() == 0


def test_collection_of_another_encoder_is_refused_by_the_cli(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    make_captioned_images(folder, range(3))
    db = str(tmp_path / "db")
    assert run_cli("index", str(folder), "--db", db, "-e", TOY).returncode == 0
    out = run_cli("index", str(folder), "--db", db, "-e", "reliability.toy_plugin:other_toy")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "built with encoder 'toy-v1'" in out.stderr and "'toy-other'" in out.stderr
    with pytest.raises(EncoderMismatchError):
        Store(db, encoder=ToyEncoder(name="toy-other")).count()
    assert Store(db, encoder=ToyEncoder()).count() == 3  # the refused run changed nothing


# ---- the CLI over a folder with hostile files ----------------------------------------------------------------
def test_cli_skips_hostile_files_names_each_and_strict_stops(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    make_captioned_images(folder, range(4))
    (folder / "cut.png").write_bytes(png_bytes()[:60])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "bomb.png").write_bytes(png_bomb(9000, 9000))
    (folder / "folder.png").mkdir()  # a directory with an image name: not a document
    os.symlink(folder / "loop-b.png", folder / "loop-a.png")
    os.symlink(folder / "loop-a.png", folder / "loop-b.png")
    (folder / "paper.pdf").write_bytes(b"%PDF-1.4\n")  # a PDF is a document now: this truncated one is reported
    db = str(tmp_path / "db")
    out = run_cli("index", str(folder), "--db", db, "-e", TOY)
    assert out.returncode == 0, out.stderr
    assert "4 chunks added, 0 already indexed, 6 files skipped" in out.stdout, out.stdout
    assert "now holds 4 records" in out.stdout
    for name, reason in [("cut.png", "truncated"), ("empty.jpg", "0 bytes"), ("bomb.png", "decompression bomb"),
                         ("loop-a.png", "symlink loop"), ("loop-b.png", "symlink loop"),
                         ("paper.pdf", "cannot be read")]:
        assert any(f"skipped {folder / name}:" in line and reason in line for line in out.stderr.splitlines()), \
            f"{name} not reported with {reason!r}:\n{out.stderr}"
    # the user fixes one file: a re-run adds just that one and still names the others
    make_png(folder / "cut.png", (9, 9, 9))
    out = run_cli("index", str(folder), "--db", db, "-e", TOY)
    assert "1 chunks added, 4 already indexed, 5 files skipped" in out.stdout, out.stdout
    # --strict stops at the first bad file, names it, and exits non-zero
    out = run_cli("index", str(folder), "--db", str(tmp_path / "strict-db"), "-e", TOY, "--strict")
    assert out.returncode == 2 and "bomb.png" in out.stderr and "decompression bomb" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_manifest_with_bad_rows(tmp_path: Path) -> None:
    make_png(tmp_path / "ok.png", (5, 5, 5))
    rows = [
        {"image": "ok.png", "text": "fine row", "id": "r1"},
        {"image": "../../../../etc/hostname", "text": "not an image", "id": "r2"},
        {"text": "   ", "id": "r3"},
        {"text": "caf\udce9", "id": "r4"},
        {"text": "nested metadata", "id": "r5", "metadata": {"a": {"b": [1, 2]}, "e": {}}},
        {"text": "dollar metadata", "id": "r6", "$bad": 1},
    ]
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    db = str(tmp_path / "db")
    out = run_cli("index", str(manifest), "--db", db, "-e", TOY)
    assert out.returncode == 0, out.stderr
    assert "2 added, 0 already indexed, 4 skipped" in out.stdout
    for origin in ("rows.jsonl:2", "rows.jsonl:3", "rows.jsonl:4", "rows.jsonl:6"):
        assert f"skipped {origin}:" in out.stderr, out.stderr
    store = Store(db, encoder=ToyEncoder())
    assert sorted(store.ids()) == ["r1", "r5"]
    assert store.get(["r5"])[0].metadata == {"a.b": [1, 2]}
