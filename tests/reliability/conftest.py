"""Fixtures for the reliability tests: a real ``chroma run`` server, the ``mmembed`` CLI as a subprocess,
and folders of small, distinct captioned images.

The server is the ``chroma`` executable that ships with the chromadb package, started on 127.0.0.1 on a free
port with its data in a temporary directory, and stopped (SIGTERM, then SIGKILL) when the test is done, so
CI needs nothing started by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

TESTS_DIR = Path(__file__).resolve().parent.parent
TOY = "reliability.toy_plugin:toy"
LOGGED_TOY = "reliability.toy_plugin:logged_toy"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def console_script(name: str, installed_with: str) -> str:
    """The ``name`` command on PATH or next to this Python; a missing one fails the test (never skips it)."""
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(found).is_file():
        pytest.fail(f"the `{name}` command (installed with {installed_with}) was not found next to Python")
    return found


def chroma_executable() -> str:
    return console_script("chroma", "the chromadb package")


@dataclass
class ChromaServer:
    """A ``chroma run`` process owned by a test."""

    path: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.path.with_name(self.path.name + ".log")

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "ChromaServer":
        cmd = [chroma_executable(), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chroma run exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.alive():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"chroma run did not answer within {timeout}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        try:
            with _NO_PROXY.open(f"{self.url}/api/v2/heartbeat", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        """Crash the server (SIGKILL): no chance to flush or say goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def start_chroma_server(path: Path, attempts: int = 3) -> ChromaServer:
    """Start a server on a free port (retrying if another process took the port in between)."""
    error: Exception | None = None
    for _ in range(attempts):
        try:
            return ChromaServer(path, free_port()).start()
        except RuntimeError as exc:
            error = exc
    raise RuntimeError(f"could not start chroma run after {attempts} attempts: {error}")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """One real Chroma server for the session; tests keep apart through their own collection names."""
    server = start_chroma_server(tmp_path_factory.mktemp("chroma-server") / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def chroma_server_factory(tmp_path: Path) -> Iterator[Any]:
    """Start servers a test can stop and restart itself; all are stopped at teardown."""
    servers: list[ChromaServer] = []

    def start(path: Path | None = None, port: int | None = None) -> ChromaServer:
        data = path or tmp_path / f"chroma-{len(servers)}"
        server = ChromaServer(data, port).start() if port else start_chroma_server(data)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def collection_name(request: pytest.FixtureRequest) -> str:
    """A collection name unique to the test (3-63 chars, Chroma's rules)."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"{base or 'test'}-{uuid.uuid4().hex[:8]}"


# ---- the CLI as a subprocess ------------------------------------------------------------------------------
def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMEMBED_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmembed.cli", *args]


def run_cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_cmd(*args), env=cli_env(**env), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def read_encode_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---- data ----------------------------------------------------------------------------------------------
def color_for(i: int) -> tuple[int, int, int]:
    return (i % 256, (i // 256) % 256, 255 - i % 256)


def make_captioned_images(folder: Path, indices: range | list[int]) -> list[Path]:
    """``img-00017.png`` (a 16x16 colour unique to its index) with caption ``img-00017.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in indices:
        path = folder / f"img-{i:05d}.png"
        Image.new("RGB", (16, 16), color_for(i)).save(path)
        path.with_suffix(".txt").write_text(f"picture number {i}")
        paths.append(path)
    return paths
