"""The training-data lock file, read side: the pinned packages, where the lock lives, fetch records and digests.

``training_data.lock.json`` (next to this module) pins every registry package the default model's training
sets are built from (registry, name, exact version, sha256 of the downloaded archive, attribution facts).
:mod:`mmembed.data.fetch` and :mod:`mmembed.data.training_sets` read it through this module; pinning and
recording (``python -m mmembed.data.lock``) live in :mod:`mmembed.data.lock`, which needs the fetchers and
the builders, so this module imports neither.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LOCK_FILE = Path(__file__).with_name("training_data.lock.json")
#: environment variable that lets a build use the registry's current version when a pinned one is gone
UNLOCKED_ENV = "MMEMBED_DATA_UNLOCKED"
#: the record each fetch writes into its cache entry: what was actually used
SOURCE_RECORD = ".mmembed-source.json"
FORMAT = 1


@dataclass(frozen=True)
class LockedPackage:
    """One pinned registry package and what its attribution needs."""

    registry: str  # "npm" or "deb"
    name: str
    version: str
    sha256: str
    title: str = ""
    author: str = ""
    author_url: str = ""
    license: str = ""  # SPDX id
    license_name: str = ""
    license_url: str = ""
    source_url: str = ""
    used_for: str = ""  # "images", "captions", ...
    changes: str = ""  # what the builders do to the data (for the attribution file)

    @property
    def key(self) -> str:
        return f"{self.registry}:{self.name}"

    def spec(self) -> str:
        return f"{self.name}@{self.version}" if self.registry == "npm" else f"{self.name}={self.version}"


@dataclass
class Lock:
    packages: list[LockedPackage]
    digests: dict[str, Any] = field(default_factory=dict)
    comment: str = ""
    path: Path | None = None

    def get(self, registry: str, name: str) -> LockedPackage | None:
        for p in self.packages:
            if p.registry == registry and p.name == name:
                return p
        return None

    def require(self, registry: str, name: str) -> LockedPackage:
        p = self.get(registry, name)
        if p is None:
            from ..errors import DataFetchError

            raise DataFetchError(
                f"{registry} package {name} is used by a training set but is not pinned in {self.path or LOCK_FILE}; "
                f"pin it with `python -m mmembed.data.lock --update {name}`")
        return p

    def to_json(self) -> str:
        doc = {"format": FORMAT, "comment": self.comment,
               "packages": [asdict(p) for p in self.packages], "digests": self.digests}
        return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"

    def save(self, path: Path | None = None) -> Path:
        path = path or self.path or LOCK_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path


def lock_path() -> Path:
    """The lock in use: ``MMEMBED_DATA_LOCK`` (a path, for tests and experiments) or the packaged file."""
    env = os.environ.get("MMEMBED_DATA_LOCK")
    return Path(env).expanduser() if env else LOCK_FILE


def load_lock(path: str | os.PathLike[str] | None = None) -> Lock:
    p = Path(path) if path is not None else lock_path()
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        from ..errors import DataFetchError

        raise DataFetchError(f"the training-data lock {p} is missing; reinstall mmembed") from None
    if doc.get("format") != FORMAT:
        from ..errors import DataFetchError

        raise DataFetchError(f"{p}: unsupported lock format {doc.get('format')!r} (expected {FORMAT})")
    pkgs = [LockedPackage(**row) for row in doc.get("packages", [])]
    return Lock(pkgs, dict(doc.get("digests", {})), str(doc.get("comment", "")), p)


def unlocked_allowed() -> bool:
    return os.environ.get(UNLOCKED_ENV, "").strip().lower() in ("1", "true", "yes")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_source_record(dest: Path, record: Mapping[str, Any]) -> None:
    (dest / SOURCE_RECORD).write_text(json.dumps(dict(record), indent=2, sort_keys=True) + "\n")


def read_source_record(dest: Path) -> dict[str, Any] | None:
    path = dest / SOURCE_RECORD
    if not path.is_file():
        return None
    return json.loads(path.read_text())


# ---- digests of what is built from the locked packages ----------------------------------------------------
def array_digest(*parts: Any) -> str:
    """sha256 over numpy arrays (dtype, shape and bytes) and JSON-able values, in order."""
    import numpy as np

    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.tobytes())
        else:
            h.update(json.dumps(part, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    return h.hexdigest()


def compare_digests(expected: Mapping[str, Any], got: Mapping[str, Any], *, what: str) -> list[str]:
    """Human-readable differences between recorded and rebuilt digests (empty: identical). Keys missing on
    one side are reported too."""
    problems = []
    for key in sorted(set(expected) | set(got)):
        e, g = expected.get(key), got.get(key)
        if isinstance(e, Mapping) and isinstance(g, Mapping):
            problems += compare_digests(e, g, what=f"{what} {key}")
        elif e != g:
            problems.append(f"{what} {key}: lock records {e!r}, this build gave {g!r}")
    return problems


def render_versions() -> dict[str, str]:
    """Versions of the libraries that turn package files into training pixels (part of the digests' meaning:
    another resvg or Pillow may rasterise differently)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("resvg-py", "pillow", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out
