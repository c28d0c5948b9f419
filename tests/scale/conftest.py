"""Fixtures for the Ray tests: a real local Ray cluster, real ``ray start`` head and worker processes, real
``chroma run`` servers (from tests/reliability), all on loopback addresses and all stopped when the test ends,
failed or not.

Ray turns "127.0.0.1" into the machine's network address, so clusters here use other loopback addresses
(127.0.0.2, 127.0.0.3), which Linux routes to the loopback interface.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reliability.conftest import (  # noqa: F401 - fixtures re-exported for these tests
    TESTS_DIR,
    ChromaServer,
    chroma_server,
    chroma_server_factory,
    cli_cmd,
    collection_name,
    console_script,
    free_port,
    make_captioned_images,
)

HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"


def ray_env(**extra: str) -> dict[str, str]:
    """Environment for Ray processes and drivers: the tests folder importable (test encoders), no usage
    reporting, and a token of this test's own for Ray's token authentication."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMEMBED_", "RAY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def ray_executable() -> str:
    return console_script("ray", "mmembed[ray]")


@dataclass
class RayNodes:
    """``ray start --head`` and ``ray start --address`` worker processes, each in its own process group so
    that stopping it stops every process it started."""

    tmp: Path
    env: dict[str, str]
    port: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{self.port}"

    def _start(self, args: list[str], log: str) -> None:
        with (self.tmp / log).open("ab") as fh:
            self.procs.append(subprocess.Popen([ray_executable(), "start", "--block", *args], env=self.env,
                                               stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               start_new_session=True))

    def start(self, head_cpus: int = 1, worker_cpus: int = 1, timeout: float = 120) -> "RayNodes":
        self.port = free_port()
        self._start(["--head", f"--port={self.port}", f"--node-ip-address={HEAD_IP}", f"--num-cpus={head_cpus}",
                     "--include-dashboard=false", f"--temp-dir={self.tmp / 'ray'}",
                     f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}"],
                    "head.log")
        self._wait(lambda: self.node_started("head.log"), timeout, "the head node")
        self._start([f"--address={self.address}", f"--node-ip-address={WORKER_IP}", f"--num-cpus={worker_cpus}",
                     f"--dashboard-agent-listen-port={free_port()}"], "worker.log")
        self._wait(lambda: self.node_started("worker.log"), timeout, "the worker node")
        return self

    def node_started(self, log: str) -> bool:
        path = self.tmp / log
        return path.exists() and "Ray runtime started" in path.read_text(errors="replace")

    def _wait(self, ready, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"ray start exited with {dead[0].returncode}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{what} did not come up within {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(self.tmp.glob("*.log")))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


@pytest.fixture
def ray_nodes() -> Iterator[RayNodes]:
    """A two-node Ray cluster (head + worker process) on loopback addresses; stopped at teardown."""
    tmp = Path(tempfile.mkdtemp(prefix="mmr", dir="/tmp"))  # Ray's socket paths must stay short
    nodes = RayNodes(tmp, ray_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
                                  MMEMBED_TEST_ENCODE_LOG=str(tmp / "encode.jsonl")))
    try:
        yield nodes.start()
    finally:
        nodes.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[object]:
    """A local Ray cluster in this process with 2 logical CPUs (this machine's 2 cores), started through
    mmembed's own ``connect("local")``; shut down at the end of the module."""
    from mmembed.scale import connect

    cluster = connect("local", num_cpus=2, runtime_env={"env_vars": {
        "PYTHONPATH": ray_env()["PYTHONPATH"], "RAY_USAGE_STATS_ENABLED": "0"}})
    try:
        yield cluster
    finally:
        import ray

        ray.shutdown()
