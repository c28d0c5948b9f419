"""Data loaders for the default model: Tux Paint evaluation set and the training-pair builders.

Everything but the ``network_data`` tests runs on small fixtures written here, without network.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmembed.data import training_sets as tsets
from mmembed.data.fetch import DataFetchError
from mmembed.data.tuxpaint import Stamp, export_folder, languages, load_tuxpaint, parse_description

from data_support import fetch_or_skip

# ---- Tux Paint ---------------------------------------------------------------------------------------

FROG_TXT = """A frog.
de.utf8=Ein Frosch.
fr.utf8=Une grenouille.
pt_BR.utf8=Um sapo.
ca@valencia.utf8=Una granota.
xx.utf8=
"""


def test_parse_description_english_and_translations() -> None:
    en, tr = parse_description(FROG_TXT)
    assert en == "A frog."
    assert tr == {"de": "Ein Frosch.", "fr": "Une grenouille.", "pt_BR": "Um sapo.", "ca@valencia": "Una granota."}


def test_parse_description_without_english_raises() -> None:
    with pytest.raises(ValueError, match="English"):
        parse_description("de.utf8=Ein Frosch.\n\n")


def _stamp_tree(root: Path) -> Path:
    (root / "animals" / "amphibians").mkdir(parents=True)
    (root / "food").mkdir()
    Image.new("RGBA", (40, 30), (0, 200, 0, 255)).save(root / "animals" / "amphibians" / "frog.png")
    (root / "animals" / "amphibians" / "frog.txt").write_text(FROG_TXT, encoding="utf-8")
    Image.new("RGB", (20, 20), (255, 0, 0)).save(root / "food" / "apple.png")
    (root / "food" / "apple.txt").write_text("An apple.\nde.utf8=Ein Apfel.\n", encoding="utf-8")
    Image.new("RGB", (20, 20)).save(root / "food" / "nocaption.png")  # no .txt: not listed
    (root / "food" / "svgonly.txt").write_text("Only an SVG.\n")        # no .png: not listed
    return root


def test_load_tuxpaint_from_folder(tmp_path: Path) -> None:
    stamps = load_tuxpaint(_stamp_tree(tmp_path / "stamps"))
    assert [s.id for s in stamps] == ["animals/amphibians/frog", "food/apple"]
    frog = stamps[0]
    assert isinstance(frog, Stamp) and frog.caption == "A frog." and frog.category == "animals"
    assert frog.image_path.is_file() and frog.image_path.suffix == ".png"
    assert frog.caption_in("de") == "Ein Frosch." and frog.caption_in("en") == "A frog."
    assert frog.caption_in("ja") is None
    assert languages(stamps) == ["de"]  # only German covers both stamps
    assert languages(stamps, min_coverage=0.5) == ["ca@valencia", "de", "fr", "pt_BR"]


def test_load_tuxpaint_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tuxpaint(tmp_path / "nope")


def test_export_folder_copies_with_sidecars(tmp_path: Path) -> None:
    stamps = load_tuxpaint(_stamp_tree(tmp_path / "stamps"))
    out = export_folder(tmp_path / "demo", stamps)
    assert sorted(p.name for p in out.iterdir()) == [
        "animals__amphibians__frog.png", "animals__amphibians__frog.txt", "food__apple.png", "food__apple.txt"]
    assert (out / "food__apple.txt").read_text() == "An apple.\n"
    assert (out / "food__apple.png").read_bytes() == stamps[1].image_path.read_bytes()
    # another language, symlinks, and re-export over an existing folder
    out = export_folder(tmp_path / "demo", stamps, lang="fr", link=True)
    assert (out / "animals__amphibians__frog.txt").read_text() == "Une grenouille.\n"
    assert (out / "food__apple.txt").read_text() == "An apple.\n"  # no French: English fallback
    assert (out / "food__apple.png").is_symlink()


@pytest.mark.network_data
def test_real_tuxpaint_package() -> None:
    stamps = fetch_or_skip("tuxpaint-stamps-default", load_tuxpaint)
    assert len(stamps) > 700
    assert all(s.caption and s.image_path.is_file() for s in stamps)
    assert "de" in languages(stamps)


# ---- training-set helpers ----------------------------------------------------------------------------


def test_hexcode_and_labels() -> None:
    assert tsets.normalize_hexcode("2764-fe0f") == "2764"
    assert tsets.normalize_hexcode("1f468-200d-1f373") == "1F468-200D-1F373"
    assert tsets.has_skin_tone("1F44B-1F3FB") and not tsets.has_skin_tone("1F44B")
    assert tsets.flag_hexcode("de") == "1F1E9-1F1EA"
    with pytest.raises(ValueError):
        tsets.flag_hexcode("gb-eng")
    assert tsets.clean_label("flag:  Germany") == "flag of Germany"
    labels = tsets.emoji_labels([
        {"hexcode": "1F44B", "label": "waving hand"},
        {"hexcode": "1F44B-1F3FB", "label": "waving hand: light skin tone"},
        {"hexcode": "1F1E9-1F1EA", "label": "flag: Germany"},
        {"hexcode": "2764-FE0F", "label": "red heart"},
    ])
    assert labels == {"1F44B": "waving hand", "1F1E9-1F1EA": "flag of Germany", "2764": "red heart"}
    assert tsets.slugify("Japanese “prohibited” button") == "japanese-prohibited-button"


def test_iconify_items_captions_concepts_and_skips() -> None:
    body = '<circle cx="8" cy="8" r="6" fill="red"/>'
    icons = {"width": 16, "height": 16, "icons": {
        "red-heart": {"body": body},
        "waving-hand": {"body": body},
        "waving-hand-light": {"body": body},             # Fluent-style skin-tone suffix
        "waving-hand-light-skin-tone": {"body": body},   # Twemoji-style
        "rocket-ship": {"body": body, "width": 32},      # no code point: captioned by name
        "1234": {"body": body},                           # no letters: skipped
    }}
    labels = {"2764": "red heart", "1F44B": "waving hand"}
    items = list(tsets.iconify_items(icons, {"2764-fe0f": "red-heart"}, labels, "test",
                                     known_names={"waving-hand": "1F44B"}))
    got = [(cap, con) for _, cap, con in items]
    assert got == [("red heart", "2764"), ("waving hand", "1F44B"), ("rocket ship", "name:rocket ship")]
    assert 'viewBox="0 0 32 16"' in items[2][0]
    flags = {"width": 4, "height": 3, "icons": {"de-4x3": {"body": body}, "gb-eng": {"body": body}}}
    got = [(c, k) for _, c, k in tsets.iconify_items(flags, {}, {"1F1E9-1F1EA": "flag of Germany"}, "flag")]
    assert got == [("flag of Germany", "1F1E9-1F1EA")]


def test_render_svg_and_white_background() -> None:
    svg = tsets.iconify_svg({"body": '<rect x="0" y="0" width="8" height="4" fill="#0000ff"/>'}, 16, 8)
    arr = tsets.render_svg(svg)
    assert arr.shape == (96, 96, 3) and arr.dtype == np.uint8
    assert tuple(arr[30, 10]) == (0, 0, 255)         # the blue rectangle, top-left quarter of the icon
    assert tuple(arr[5, 5]) == (255, 255, 255)       # letterbox above the 2:1 icon is white
    assert tuple(arr[40, 80]) == (255, 255, 255)     # transparent part composited on white


def test_to_rgb_on_white_composites_transparency() -> None:
    img = Image.new("RGBA", (10, 20), (0, 0, 0, 0))
    img.putpixel((5, 10), (255, 0, 0, 255))
    arr = tsets.to_rgb_on_white(img, 32)
    assert arr.shape == (32, 32, 3)
    assert (arr == 255).mean() > 0.95 and arr[..., 1].min() < 128


def test_read_idx_roundtrip_and_errors(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = b"\x00\x00\x08\x03" + struct.pack(">III", 2, 3, 4) + data.tobytes()
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(tsets.read_idx(path), data)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataFetchError, match="not an IDX"):
        tsets.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(DataFetchError, match="holds 3"):
        tsets.read_idx(short)


def test_training_set_save_load_roundtrip(tmp_path: Path) -> None:
    ts = tsets.TrainingSet(np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8),
                           ["red heart", "red heart", "flag of Germany"], ["2764", "2764", "1F1E9-1F1EA"],
                           ["a", "b", "a"], {"a": "MIT"})
    path = tsets.save_training_set(ts, tmp_path / "set.npz")
    back = tsets.load_training_set(path)
    np.testing.assert_array_equal(back.images, ts.images)
    assert (back.captions, back.concepts, back.sources, back.licenses) == (ts.captions, ts.concepts, ts.sources,
                                                                           ts.licenses)
    assert back.concept_index().tolist() == [0, 0, 1] and len(back) == 3
    assert json.loads(json.dumps(back.licenses)) == {"a": "MIT"}


_FAKE_SHA = "ab" * 32


def _fake_package(root: Path, kind: str, key: str, name: str | None = None, version: str = "1.0.0") -> Path:
    """A cache entry exactly as :mod:`mmembed.data.fetch` leaves it after a successful fetch of a package
    pinned (by :func:`_fake_lock`) at ``version`` with sha256 ``_FAKE_SHA``."""
    base = root / kind / f"{key}-{version}"
    base.mkdir(parents=True)
    (base / ".mmembed-complete").write_text("ok\n")
    (base / ".mmembed-source.json").write_text(json.dumps({
        "registry": kind, "name": name or key, "version": version, "sha256": _FAKE_SHA, "locked": True}))
    inner = base / ("package" if kind == "npm" else "root")
    inner.mkdir()
    return inner


def test_build_training_set_from_cached_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole builder on tiny packages laid out like the real ones (no network: they are 'cached')."""
    from mmembed.data.lock import Lock, LockedPackage

    cache = tmp_path / "cache"
    monkeypatch.setenv("MMEMBED_CACHE", str(cache))
    pins = [("npm", "emojibase-data"), ("npm", "emoji-datasource-google"), ("npm", "@iconify-json/noto"),
            ("deb", "dataset-fashion-mnist")]
    lock = Lock([LockedPackage(registry=r, name=n, version="1.0.0", sha256=_FAKE_SHA) for r, n in pins], {})
    monkeypatch.setenv("MMEMBED_DATA_LOCK", str(lock.save(tmp_path / "lock.json")))
    eb = _fake_package(cache, "npm", "emojibase-data")
    (eb / "en").mkdir()
    (eb / "en" / "data.json").write_text(json.dumps([
        {"hexcode": "2764-FE0F", "label": "red heart"}, {"hexcode": "1F1E9-1F1EA", "label": "flag: Germany"}]))
    gg = _fake_package(cache, "npm", "emoji-datasource-google")
    (gg / "img" / "google" / "64").mkdir(parents=True)
    Image.new("RGBA", (64, 64), (200, 0, 0, 255)).save(gg / "img" / "google" / "64" / "2764-fe0f.png")
    (gg / "emoji.json").write_text(json.dumps([
        {"unified": "2764-FE0F", "image": "2764-fe0f.png"},
        {"unified": "1F600", "image": "1f600.png"}]))  # no label and no file: skipped
    noto = _fake_package(cache, "npm", "iconify-json__noto", "@iconify-json/noto")
    body = '<circle cx="8" cy="8" r="6" fill="red"/>'
    (noto / "icons.json").write_text(json.dumps({"width": 16, "height": 16, "icons": {
        "red-heart": {"body": body}, "flag-germany": {"body": body}, "kite": {"body": body}}}))
    (noto / "chars.json").write_text(json.dumps({"2764": "red-heart", "1f1e9-1f1ea": "flag-germany"}))
    (noto / "info.json").write_text(json.dumps({"license": {"spdx": "Apache-2.0"}}))
    fm = _fake_package(cache, "deb", "dataset-fashion-mnist") / "usr" / "share" / "datasets" / "fashion-mnist"
    fm.mkdir(parents=True)
    imgs = np.zeros((20, 28, 28), dtype=np.uint8)
    imgs[:, 10:18, 10:18] = 255
    labels = np.repeat(np.arange(10, dtype=np.uint8), 2)
    (fm / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(
        b"\x00\x00\x08\x03" + struct.pack(">III", 20, 28, 28) + imgs.tobytes()))
    (fm / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(
        b"\x00\x00\x08\x01" + struct.pack(">I", 20) + labels.tobytes()))

    ts = tsets.build_training_set(iconify_sets=("noto",), fashion_per_class=1, workers=1, log=None)
    assert ts.images.shape == (1 + 3 + 10, 96, 96, 3) and ts.images.dtype == np.uint8
    assert ts.captions[:4] == ["red heart", "red heart", "flag of Germany", "kite"]
    assert ts.concepts[:4] == ["2764", "2764", "1F1E9-1F1EA", "name:kite"]
    assert ts.captions[4:] == list(tsets.FASHION_CLASSES)
    assert ts.licenses["npm @iconify-json/noto"] == "Apache-2.0"
    # what each package was is recorded with the set: the pinned version and hash
    assert [(p["registry"], p["name"], p["version"], p["sha256"], p["locked"]) for p in ts.packages] == [
        (r, n, "1.0.0", _FAKE_SHA, True) for r, n in pins]
    assert ts.images[0, 48, 48].tolist() == [200, 0, 0]
    fashion = ts.images[4]
    assert fashion[0, 0].tolist() == [255, 255, 255] and fashion[48, 48].tolist() == [0, 0, 0]  # dark on white
    # cached: a second call does not need the packages any more
    import shutil

    shutil.rmtree(cache / "npm")
    again = tsets.build_training_set(iconify_sets=("noto",), fashion_per_class=1, workers=1, log=None)
    np.testing.assert_array_equal(again.images, ts.images)
    assert again.captions == ts.captions
    assert again.packages == ts.packages
