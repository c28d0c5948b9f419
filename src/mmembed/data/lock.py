"""The training-data lock: every registry package the default model's training sets are built from, pinned.

``training_data.lock.json`` (next to this module) lists, per package, the registry (``npm`` or ``deb``), the
name, the exact version, the sha256 of the downloaded archive (the ``.tgz`` that ``npm pack`` writes, the
``.deb`` that ``apt-get download`` writes) and what the attribution file needs (title, author, license,
source). :mod:`mmembed.data.fetch` reads it: a locked package is always fetched at its pinned version and its
archive must hash to the pinned sha256, so a rebuild of the training set months later uses the same bytes.

When a registry no longer serves a pinned version the fetch fails with a :class:`~mmembed.data.fetch.
DataFetchError` naming the package and the version. Setting ``MMEMBED_DATA_UNLOCKED=1`` lets the build go on
with what the registry serves now; every fetch records what it actually used (``.mmembed-source.json`` in
the cache entry), the training-set builders collect those records into their manifest, and a model trained
from such data says so in its training summary.

The lock also records the **digests of what is built from it** (the rendered training set per source, and the
modality recipe's pairs and pool files): ``python -m mmembed.data.lock --check`` rebuilds and compares, and the
recipes compare what they built (see :func:`compare_digests`).

    python -m mmembed.data.lock --show              # the pinned packages
    python -m mmembed.data.lock --update [NAME...]  # pin the versions the registries serve now (re-pins all
                                                    # or the named packages; then rebuild and --record)
    python -m mmembed.data.lock --record            # build the sets and store their digests in the lock
    python -m mmembed.data.lock --check             # build the sets and compare with the recorded digests
    (``--data v2`` for mmembed-mini-v2's recipe; the default is v3's, which adds the Open Clip Art slice)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from .lockfile import (  # noqa: F401  (re-exported: the lock's read side)
    FORMAT,
    LOCK_FILE,
    Lock,
    LockedPackage,
    SOURCE_RECORD,
    UNLOCKED_ENV,
    array_digest,
    compare_digests,
    load_lock,
    lock_path,
    read_source_record,
    render_versions,
    sha256_file,
    unlocked_allowed,
    write_source_record,
)


# ---- what the attribution needs, for packages whose metadata is not machine-readable ---------------------
#: Hand-checked attribution facts for the packages that do not carry an Iconify ``info.json``.
MANUAL_INFO: dict[str, dict[str, str]] = {
    "npm:emojibase-data": {
        "title": "Emojibase data (emoji names, tags, translations)", "author": "Miles Johnson",
        "author_url": "https://github.com/milesj/emojibase", "license": "MIT", "license_name": "MIT License",
        "license_url": "https://opensource.org/license/mit", "source_url": "https://github.com/milesj/emojibase",
        "used_for": "captions (English labels; other locales' labels and tags for text->text pairs)",
        "changes": "labels used as captions (\"flag: X\" written \"flag of X\"); skin-tone variants dropped"},
    "npm:emoji-datasource-google": {
        "title": "Noto Emoji images from emoji-data (64 px PNG)", "author": "Google Inc (images); Cal Henderson (emoji-data)",
        "author_url": "https://github.com/iamcal/emoji-data", "license": "Apache-2.0",
        "license_name": "Apache License 2.0 (Noto Emoji images); emoji-data itself MIT",
        "license_url": "https://www.apache.org/licenses/LICENSE-2.0",
        "source_url": "https://github.com/iamcal/emoji-data", "used_for": "images",
        "changes": "composited on white and resized from 64 px to 96 x 96 px (bicubic); skin-tone variants dropped"},
    "deb:dataset-fashion-mnist": {
        "title": "Fashion-MNIST (train split)", "author": "Zalando Research (Han Xiao, Kashif Rasul, Roland Vollgraf)",
        "author_url": "https://github.com/zalandoresearch/fashion-mnist", "license": "MIT",
        "license_name": "MIT License", "license_url": "https://opensource.org/license/mit",
        "source_url": "https://github.com/zalandoresearch/fashion-mnist", "used_for": "images",
        "changes": "300 images per class drawn (seeded) from the train split; inverted to dark on white; "
                   "resized from 28 to 96 x 96 px (bicubic); class names as captions"},
    "deb:openclipart-svg": {
        "title": "Open Clip Art Library 0.18 (SVG)", "author": "the Open Clip Art Library's contributors",
        "author_url": "https://openclipart.org", "license": "public-domain",
        "license_name": "Creative Commons Public Domain Dedication (Debian package copyright)",
        "license_url": "https://creativecommons.org/licenses/publicdomain/",
        "source_url": "https://openclipart.org",
        "used_for": "images and captions (mmembed-mini-v3 and later): the training slice; a held-back slice is "
                    "the development set",
        "changes": "rendered from SVG with resvg to fit 96 x 96 px, composited on white and centred; titles (or "
                   "file names where a title names a collection) as captions; folders of shapes, buttons, logos, "
                   "computer icons, patterns and gradients left out; drawings that are near-duplicates of a "
                   "Tux Paint stamp left out"},
}

ICONIFY_CHANGES = ("rendered from SVG with resvg to fit 96 x 96 px, composited on white and centred; "
                   "skin-tone variants dropped; emoji names (emojibase) or icon names as captions")


def _iconify_info(root: Path, name: str) -> dict[str, str]:
    info = json.loads((root / "info.json").read_text(encoding="utf-8"))
    author = info.get("author") or {}
    lic = info.get("license") or {}
    return {"title": str(info.get("name", name)), "author": str(author.get("name", "")),
            "author_url": str(author.get("url", "")), "license": str(lic.get("spdx", "")),
            "license_name": str(lic.get("title", "")), "license_url": str(lic.get("url", "")),
            "source_url": str(author.get("url", "")), "used_for": "images", "changes": ICONIFY_CHANGES}


def training_packages() -> list[tuple[str, str]]:
    """(registry, name) of every package the training-set builders read, in build order."""
    from .training_sets import ICONIFY_SETS

    return ([("npm", "emojibase-data"), ("npm", "emoji-datasource-google")]
            + [("npm", f"@iconify-json/{s}") for s in ICONIFY_SETS] + [("deb", "dataset-fashion-mnist"),
                                                                       ("deb", "openclipart-svg")])


def pin(registry: str, name: str) -> LockedPackage:
    """Fetch what the registry serves now for ``name`` and describe it as a lock entry."""
    from .fetch import fetch_package_unpinned

    root, record = fetch_package_unpinned(registry, name)
    key = f"{registry}:{name}"
    meta = dict(MANUAL_INFO[key]) if key in MANUAL_INFO else _iconify_info(root, name)
    return LockedPackage(registry=registry, name=name, version=record["version"], sha256=record["sha256"], **meta)


def update(names: Iterable[str] = ()) -> Lock:
    """Re-pin ``names`` (all training packages when empty) to what the registries serve now."""
    wanted = set(names)
    try:
        lock = load_lock()
    except Exception:
        lock = Lock([], {}, "", lock_path())
    out = []
    for registry, name in training_packages():
        old = lock.get(registry, name)
        if old is not None and wanted and name not in wanted:
            out.append(old)
            continue
        new = pin(registry, name)
        print(f"{registry} {name}: {old.version if old else '-'} -> {new.version} sha256 {new.sha256[:12]}...",
              file=sys.stderr)
        out.append(new)
    lock.packages = out
    return lock


def digest_key(recipe: str) -> str:
    """Where the lock keeps the digests of a training-data recipe's rendered set."""
    return "training_set" if recipe == "v2" else f"training_set_{recipe}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmembed.data.lock", description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--show", action="store_true", help="print the pinned packages")
    g.add_argument("--update", nargs="*", metavar="NAME", help="re-pin (all or the named) packages")
    g.add_argument("--record", action="store_true", help="build the training sets and record their digests")
    g.add_argument("--check", action="store_true", help="build the training sets and compare their digests")
    ap.add_argument("--data", choices=("v2", "v3"), default="v3",
                    help="which training-data recipe to build for --record/--check (default v3, the shipped "
                         "default's; v2 is mmembed-mini-v2's)")
    args = ap.parse_args(argv)
    if args.show:
        lock = load_lock()
        for p in lock.packages:
            print(f"{p.registry:4} {p.name:45} {p.version:28} {p.sha256}  {p.license}")
        return 0
    if args.update is not None:
        path = update(args.update).save()
        print(f"wrote {path}; rebuild and run `python -m mmembed.data.lock --record` to store the new digests")
        return 0
    from .training_sets import build_training_set, training_set_digests

    from ..train.mini import DATA_RECIPES

    # render again from the (cached, hash-checked) packages
    ts = build_training_set(rebuild=True, **DATA_RECIPES[args.data])
    got = training_set_digests(ts)
    lock = load_lock()
    key = digest_key(args.data)
    if args.record:
        lock.digests[key] = got
        lock.digests["render_versions"] = render_versions()
        lock.save()
        print(f"recorded the training-set digests in {lock.path}")
        return 0
    problems = compare_digests(lock.digests.get(key, {}), got, what="training set")
    if problems:
        print("the rebuilt training set differs from the lock's record:\n  " + "\n  ".join(problems)
              + f"\n(renderer now {render_versions()}, when recorded {lock.digests.get('render_versions')})",
              file=sys.stderr)
        return 1
    print(f"the rebuilt training set is identical to the lock's record ({got['all']['sha256'][:16]}..., "
          f"{got['all']['images']} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
