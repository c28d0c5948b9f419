"""Shared fixtures.

``ToyEncoder`` is a small but real Encoder (hashed character n-grams for text, colour histograms for images)
used where the code under test is the store, CLI or adapters rather than a model: it is fast, deterministic,
and makes similar inputs score higher, so ranking assertions mean something.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Hub ids download (mmembed.hub). Tests never reach a real hub: anything not pointed at a local test server
# goes to a closed local port and fails at once (the hub tests set HF_ENDPOINT to their own server).
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")

from mmembed.encoders.base import Encoder  # noqa: E402
from mmembed.inputs import Interleaved, TextPart  # noqa: E402


class ToyEncoder(Encoder):
    def __init__(self, dim: int = 64, name: str = "toy-v1") -> None:
        self.dim = dim
        self.name = name
        self.calls: list[int] = []  # batch sizes seen, to check caching

    def _text(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        t = f"  {text.lower()}  "
        for i in range(len(t) - 2):
            h = int(hashlib.md5(t[i : i + 3].encode()).hexdigest(), 16)
            v[h % (self.dim // 2)] += 1.0
        return v

    def _image(self, img: Image.Image) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        small = np.asarray(img.convert("RGB").resize((8, 8)), dtype=np.float32) / 255.0
        hist = np.concatenate([np.histogram(small[..., c], bins=self.dim // 6, range=(0, 1))[0] for c in range(3)])
        v[self.dim // 2 : self.dim // 2 + hist.size] = hist[: self.dim - self.dim // 2]
        return v

    def _encode_batch(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool) -> np.ndarray:
        self.calls.append(len(items))
        out = []
        for it in items:
            v = np.zeros(self.dim, dtype=np.float32)
            for p in it.parts:
                v += self._text(p.text) if isinstance(p, TextPart) else self._image(p.image)
            if instruction:
                v += 0.1 * self._text(instruction)
            if not v.any():
                v[0] = 1.0
            out.append(v)
        return np.stack(out)


@pytest.fixture
def toy_encoder() -> ToyEncoder:
    return ToyEncoder()


def make_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    for name, color, caption in [
        ("red", (220, 20, 20), "a red apple"),
        ("green", (20, 200, 30), "a green leaf"),
        ("blue", (20, 30, 220), "the blue sea"),
        ("yellow", (240, 230, 20), "a yellow banana"),
    ]:
        make_png(d / f"{name}.png", color)
        (d / f"{name}.txt").write_text(caption)
    return d
