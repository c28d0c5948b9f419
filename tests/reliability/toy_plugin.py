"""Encoder factories for ``mmembed`` subprocesses, loaded with ``--encoder reliability.toy_plugin:toy``.

The CLI resolves ``package.module:factory`` specs (see ``mmembed.load_encoder``); the subprocess gets the
``tests`` folder on ``PYTHONPATH``. ``logged_toy`` additionally appends one JSON line per embedded batch to
``$MMEMBED_TEST_ENCODE_LOG`` (process id, time, and the texts/image names embedded) and sleeps
``$MMEMBED_TEST_ENCODE_DELAY`` seconds per batch, so a test can see how far a run got, kill it mid-run, and
prove what a re-run recomputed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from conftest import ToyEncoder

from mmembed.inputs import Interleaved, TextPart


def toy(name: str, **_: Any) -> ToyEncoder:
    return ToyEncoder()


class LoggedToyEncoder(ToyEncoder):
    def __init__(self, log: str, delay: float) -> None:
        super().__init__()
        self.log = log
        self.delay = delay

    def _encode_batch(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool) -> Any:
        out = super()._encode_batch(items, instruction=instruction, is_query=is_query)
        if self.delay:
            time.sleep(self.delay)
        labels = [
            " ".join(p.text if isinstance(p, TextPart) else os.path.basename(p.uri or "?") for p in it.parts)
            for it in items
        ]
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "t": time.time(), "query": is_query, "items": labels}) + "\n")
            fh.flush()
        return out


def logged_toy(name: str, **_: Any) -> ToyEncoder:
    return LoggedToyEncoder(os.environ["MMEMBED_TEST_ENCODE_LOG"], float(os.environ.get("MMEMBED_TEST_ENCODE_DELAY", "0")))


def other_toy(name: str, **_: Any) -> ToyEncoder:
    """Same dimension as ``toy`` but another name: a different vector space the store must refuse to mix."""
    return ToyEncoder(name="toy-other")
