"""Shared pieces for the LangChain adapter tests.

``ToyReranker`` is a small but real :class:`mmembed.Reranker` (it scores with ``ToyEncoder`` vectors through
the Reranker base class), so the adapters are tested against the true protocol, not a mock. The bundled
default model ships inside the package, so the tests that use it always run (no availability probe that could
swallow a loading error and turn it into a skip).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from conftest import ToyEncoder, make_png
from mmembed.inputs import Interleaved
from mmembed.rerankers.base import Reranker

COLOURS = {
    "red": ((220, 20, 20), "a red apple"),
    "green": ((20, 200, 30), "a green leaf"),
    "blue": ((20, 30, 220), "the blue sea"),
    "yellow": ((240, 230, 20), "a yellow banana"),
    "black": ((10, 10, 10), "a black cat at night"),
}


class ToyReranker(Reranker):
    name = "toy-reranker"

    def __init__(self, encoder: ToyEncoder | None = None) -> None:
        self.encoder = encoder or ToyEncoder()
        self.seen: list[tuple[Interleaved, list[Interleaved], str | None]] = []

    def _score_batch(self, query: Interleaved, candidates: Sequence[Interleaved], *,
                     instruction: str | None) -> list[float]:
        self.seen.append((query, list(candidates), instruction))
        q = self.encoder.encode_documents([query])[0]
        c = self.encoder.encode_documents(list(candidates))
        return (c @ q).astype(np.float64).tolist()


def colour_images(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {name: make_png(folder / f"{name}.png", rgb) for name, (rgb, _) in COLOURS.items()}


def corrupt_image(path: Path) -> Path:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not really a png" * 4)
    return path
