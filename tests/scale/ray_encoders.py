"""Encoders for the Ray tests: the toy encoder (tests/conftest.py), logging each batch it embeds.

Each batch appends a ``start`` line before embedding and an ``end`` line after it (process id, Ray node id,
the image names), and sleeps ``delay`` seconds in between, so a test can see which actor process is busy at a
given moment, kill it while it is, and tell afterwards what ran where. Ray workers import this module by
name, so the tests put the ``tests`` folder on their PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conftest import ToyEncoder

from mmembed.inputs import Interleaved, TextPart


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - only a label in the log
        return ""


class LoggedEncoder(ToyEncoder):
    def __init__(self, log: str | os.PathLike[str], delay: float = 0.0) -> None:
        super().__init__()
        self.log = str(log)
        self.delay = delay

    def _write(self, event: str, items: Sequence[Interleaved]) -> None:
        labels = [" ".join(p.text if isinstance(p, TextPart) else os.path.basename(p.uri or "?") for p in it.parts)
                  for it in items]
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"event": event, "pid": os.getpid(), "node": _node_id(), "t": time.time(),
                                 "items": labels}) + "\n")

    def _encode_batch(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool) -> Any:
        self._write("start", items)
        if self.delay:
            time.sleep(self.delay)
        out = super()._encode_batch(items, instruction=instruction, is_query=is_query)
        self._write("end", items)
        return out


def logged(name: str, **_: Any) -> LoggedEncoder:
    """``--encoder scale.ray_encoders:logged``: log to ``$MMEMBED_TEST_ENCODE_LOG``."""
    return LoggedEncoder(os.environ["MMEMBED_TEST_ENCODE_LOG"], float(os.environ.get("MMEMBED_TEST_ENCODE_DELAY", "0")))


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def busy_pids(path: Path) -> set[int]:
    """Processes whose last logged event is a ``start`` (embedding a batch right now)."""
    last: dict[int, str] = {}
    for ev in read_log(path):
        last[ev["pid"]] = ev["event"]
    return {pid for pid, ev in last.items() if ev == "start"}
