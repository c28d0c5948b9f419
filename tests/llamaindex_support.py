"""Helpers for the LlamaIndex adapter tests: a cross-modal toy encoder, a toy reranker, a no-network guard.

``ColourWordEncoder`` embeds an image as the *name of its dominant colour* in the same hashed-trigram space
as text, so "a red apple" finds the red image: cross-modal ranking assertions then mean something without a
trained model. ``ToyReranker`` is a real :class:`mmembed.Reranker` scoring by that encoder's cosine. Both
stand in for models, never for the adapters or LlamaIndex, which the tests use for real.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmembed import Interleaved
from mmembed.rerankers.base import Reranker

from conftest import ToyEncoder, make_png

COLOURS = {
    "red": (220, 20, 20),
    "green": (20, 200, 30),
    "blue": (20, 30, 220),
    "yellow": (240, 230, 20),
}
CAPTIONS = {
    "red": "a red apple on a table",
    "green": "a green leaf in the rain",
    "blue": "the blue sea under the sky",
    "yellow": "a yellow banana, ripe",
}


class ColourWordEncoder(ToyEncoder):
    """ToyEncoder whose images land in the text space as their dominant colour's name."""

    def __init__(self, dim: int = 64, name: str = "colour-word-v1") -> None:
        super().__init__(dim=dim, name=name)

    def _image(self, img: Image.Image) -> np.ndarray:
        mean = np.asarray(img.convert("RGB").resize((8, 8)), dtype=np.float32).reshape(-1, 3).mean(0)
        name = min(COLOURS, key=lambda c: float(np.sum((np.asarray(COLOURS[c]) - mean) ** 2)))
        return 3.0 * self._text(name)


class ToyReranker(Reranker):
    """Scores a candidate by the cosine of the ColourWordEncoder query and document embeddings."""

    name = "toy-reranker"

    def __init__(self, encoder: ColourWordEncoder | None = None) -> None:
        self.encoder = encoder or ColourWordEncoder()
        self.seen: list[int] = []  # candidates per batch, to check what reached the model

    def _score_batch(self, query: Interleaved, candidates: Sequence[Interleaved], *,
                     instruction: str | None) -> list[float]:
        self.seen.append(len(candidates))
        q = self.encoder.encode_queries([query], instruction=instruction)[0]
        d = self.encoder.encode_documents(list(candidates))
        return [float(x) for x in d @ q]


def make_colour_folder(root: Path) -> Path:
    """PNG images with sidecar .txt captions, the layout of a real captioned image folder."""
    root.mkdir(parents=True, exist_ok=True)
    for name, rgb in COLOURS.items():
        make_png(root / f"{name}.png", rgb)
        (root / f"{name}.txt").write_text(CAPTIONS[name])
    return root


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to resolve a host or open an internet socket (Unix sockets stay allowed)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a network connection was attempted: {args[:2]!r}")

    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
