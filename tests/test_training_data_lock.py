"""The training-data lock (pinned registry packages + digests of what is built from them) and the attribution
file generated from it.

The ``network_data`` tests fetch real packages with npm; they fail (not skip) when the registry cannot be
reached, because then the lock cannot be checked.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from mmembed.data import lock as lockmod
from mmembed.data.attribution import ATTRIBUTION_FILE, MODELS, render_attribution
from mmembed.data.fetch import DataFetchError, fetch_npm, source_record
from data_support import fetch_or_skip

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "src" / "mmembed" / "models"


# ---- the lock file ---------------------------------------------------------------------------------------
def test_lock_pins_every_package_the_builders_read() -> None:
    lock = lockmod.load_lock(lockmod.LOCK_FILE)
    wanted = lockmod.training_packages()
    assert [(p.registry, p.name) for p in lock.packages] == wanted
    for p in lock.packages:
        assert re.fullmatch(r"[0-9a-f]{64}", p.sha256), p
        assert p.version and p.version not in ("unknown", "latest"), p
        assert p.license and p.license_name and p.license_url.startswith("https://"), p
        assert p.author and p.source_url.startswith("https://") and p.changes and p.used_for, p
    # the digests of what the builders make from these packages are recorded too
    sets = lock.digests["training_set"]
    assert sets["all"]["images"] == sum(v["images"] for k, v in sets.items() if k != "all")
    assert set(lock.digests["modality"]) == {"training_set", "pairs.jsonl", "pool.jsonl", "images"}


def test_lock_refuses_an_unpinned_training_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = lockmod.load_lock(lockmod.LOCK_FILE)
    lock.packages = [p for p in lock.packages if p.name != "emojibase-data"]
    path = lock.save(tmp_path / "lock.json")
    monkeypatch.setenv("MMEMBED_DATA_LOCK", str(path))
    monkeypatch.delenv(lockmod.UNLOCKED_ENV, raising=False)
    with pytest.raises(DataFetchError, match=r"npm package emojibase-data .* not pinned .*--update emojibase-data"):
        lockmod.load_lock().require("npm", "emojibase-data")
    from mmembed.data import training_sets

    with pytest.raises(DataFetchError, match="emojibase-data"):
        training_sets.build_training_set(iconify_sets=(), google_png=False, fashion_per_class=0, log=None)


def test_compare_digests_names_each_difference() -> None:
    rec = {"a": {"images": 3, "sha256": "x"}, "pairs.jsonl": "p"}
    assert lockmod.compare_digests(rec, json.loads(json.dumps(rec)), what="d") == []
    got = {"a": {"images": 3, "sha256": "y"}, "pool.jsonl": "q"}
    problems = lockmod.compare_digests(rec, got, what="d")
    assert problems == ["d a sha256: lock records 'x', this build gave 'y'",
                        "d pairs.jsonl: lock records 'p', this build gave None",
                        "d pool.jsonl: lock records None, this build gave 'q'"]


# ---- attribution ---------------------------------------------------------------------------------------------
def test_attribution_file_is_what_the_lock_generates() -> None:
    lock = lockmod.load_lock(lockmod.LOCK_FILE)
    assert ATTRIBUTION_FILE.read_text(encoding="utf-8") == render_attribution(lock), (
        "run `python -m mmembed.data.attribution` after changing the lock")
    text = ATTRIBUTION_FILE.read_text(encoding="utf-8")
    for p in lock.packages:  # every set: author, source, license name + URL, changes, pinned version + hash
        section = text.split(f"## {p.title}\n", 1)[1].split("\n## ", 1)[0]
        for field in (p.author, p.source_url, p.license_url, p.changes, p.version, p.sha256):
            assert field in section, (p.name, field)
    licenses = {p.license for p in lock.packages}
    assert {"CC-BY-4.0", "CC-BY-SA-4.0"} <= licenses
    assert "creativecommons.org/licenses/by-sa/4.0" in text and "creativecommons.org/licenses/by/4.0" in text
    assert "96 x 96 px" in text and "rendered from SVG" in text


def test_attribution_check_mode_detects_a_stale_file(tmp_path: Path) -> None:
    from mmembed.data.attribution import main

    out = tmp_path / "ATTRIBUTION.md"
    assert main(["--out", str(out)]) == 0
    assert main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("OpenMoji", "OpenMojo"))
    assert main(["--check", "--out", str(out)]) == 1


def test_attribution_ships_in_the_package_and_the_cards_link_it() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = cfg["tool"]["setuptools"]["package-data"]["mmembed"]
    pkg = ROOT / "src" / "mmembed"
    data_files = {f.resolve() for pat in patterns for f in pkg.glob(pat)}  # setuptools globs like pathlib
    for shipped in (ATTRIBUTION_FILE, lockmod.LOCK_FILE):  # both go into the wheel
        assert shipped.resolve() in data_files, (shipped, patterns)
    for model in MODELS:
        card = (MODELS_DIR / model / "MODEL_CARD.md").read_text(encoding="utf-8")
        assert "](../ATTRIBUTION.md)" in card, model
        assert "training_data.lock.json" in card, model


# ---- real fetches against the lock ---------------------------------------------------------------------------
def _one_package_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **changes: str) -> lockmod.LockedPackage:
    base = lockmod.load_lock(lockmod.LOCK_FILE)
    pkg = base.get("npm", "@iconify-json/flag")
    assert pkg is not None
    pkg = lockmod.LockedPackage(**{**pkg.__dict__, **changes})
    path = lockmod.Lock([pkg], {}, "test", None).save(tmp_path / "lock.json")
    monkeypatch.setenv("MMEMBED_DATA_LOCK", str(path))
    monkeypatch.setenv("MMEMBED_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(lockmod.UNLOCKED_ENV, raising=False)
    return pkg


@pytest.mark.network_data
def test_pinned_package_is_fetched_at_its_version_and_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _one_package_lock(tmp_path, monkeypatch)
    root = fetch_npm(pkg.name)
    assert json.loads((root / "package.json").read_text())["version"] == pkg.version
    rec = source_record(root)
    assert rec is not None and rec["locked"] is True
    assert (rec["name"], rec["version"], rec["sha256"]) == (pkg.name, pkg.version, pkg.sha256)


@pytest.mark.network_data
def test_other_bytes_under_a_pinned_version_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _one_package_lock(tmp_path, monkeypatch, sha256="0" * 64)
    with pytest.raises(DataFetchError) as err:
        fetch_npm(pkg.name)
    msg = str(err.value)
    assert pkg.name in msg and pkg.version in msg and "0" * 64 in msg and lockmod.UNLOCKED_ENV in msg
    assert not (tmp_path / "cache" / "npm").exists() or not any(
        p.name.startswith("iconify") for p in (tmp_path / "cache" / "npm").iterdir())
    # an explicitly unlocked build goes on, and records that the bytes were not the pinned ones
    monkeypatch.setenv(lockmod.UNLOCKED_ENV, "1")
    rec = source_record(fetch_npm(pkg.name))
    assert rec is not None and rec["locked"] is False and rec["sha256"] != "0" * 64


@pytest.mark.network_data
def test_a_version_the_registry_no_longer_serves_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = "0.0.1-mmembed-never-published"
    pkg = _one_package_lock(tmp_path, monkeypatch, version=gone)
    with pytest.raises(DataFetchError) as err:
        fetch_npm(pkg.name)
    msg = str(err.value)
    assert f"npm package {pkg.name} version {gone}" in msg and "no longer served" in msg
    assert lockmod.UNLOCKED_ENV in msg and f"--update {pkg.name}" in msg
    # unlocked: the registry's current version is used and recorded beside the pinned one
    monkeypatch.setenv(lockmod.UNLOCKED_ENV, "1")
    rec = source_record(fetch_npm(pkg.name))
    assert rec is not None and rec["locked"] is False
    assert rec["pinned_version"] == gone and rec["version"] != gone


@pytest.mark.network_data
def test_a_rebuilt_set_matches_the_digest_recorded_in_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flag set (530 icons, seconds to render) rebuilt from the pinned packages gives the very pixels,
    captions and concepts the shipped weights were trained on (the full set: ``python -m mmembed.data.lock
    --check``)."""
    from mmembed.data.training_sets import build_training_set, training_set_digests

    monkeypatch.delenv("MMEMBED_DATA_LOCK", raising=False)
    monkeypatch.delenv(lockmod.UNLOCKED_ENV, raising=False)
    ts = build_training_set(iconify_sets=("flag",), google_png=False, fashion_per_class=0, log=None)
    assert all(p["locked"] for p in ts.packages) and {p["name"] for p in ts.packages} == {
        "emojibase-data", "@iconify-json/flag"}
    lock = lockmod.load_lock()
    recorded = lock.digests["training_set"]["npm @iconify-json/flag"]
    assert training_set_digests(ts)["npm @iconify-json/flag"] == recorded, (
        f"the flag set rendered differently: renderer {lockmod.render_versions()}, recorded with "
        f"{lock.digests.get('render_versions')}")


@pytest.mark.network_data
def test_the_open_clip_art_slice_rebuilds_to_its_recorded_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """v3's Open Clip Art training slice (about 4,000 drawings rendered, the Tux Paint near-duplicates and the
    development concepts left out) rebuilt from the pinned package gives the pixels, captions and concepts
    recorded in the lock."""
    from mmembed.data.openclipart import TRAINING_SOURCE
    from mmembed.data.training_sets import build_training_set, training_set_digests

    monkeypatch.delenv(lockmod.UNLOCKED_ENV, raising=False)
    ts = fetch_or_skip("Debian openclipart-svg", lambda: build_training_set(
        iconify_sets=(), google_png=False, fashion_per_class=0, openclipart=True, rebuild=True, log=None))
    rec = next(p for p in ts.packages if p["name"] == "openclipart-svg")
    assert rec["locked"] and rec["excluded_tuxpaint_near_duplicates"] > 0
    recorded = lockmod.load_lock().digests[lockmod.digest_key("v3")][TRAINING_SOURCE]
    assert training_set_digests(ts)[TRAINING_SOURCE] == recorded
