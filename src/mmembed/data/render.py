"""Rendering training and evaluation images the one way the default model sees them: RGB on white,
fitted into a square of :data:`IMAGE_SIZE` pixels, centred."""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

from ..errors import DataFetchError

IMAGE_SIZE = 96


def to_rgb_on_white(img: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Composite on white, fit inside ``size`` x ``size`` keeping the aspect ratio, centre; uint8 HWC."""
    img = img.convert("RGBA")
    canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
    canvas.alpha_composite(img)
    rgb = canvas.convert("RGB")
    rgb.thumbnail((size, size), Image.Resampling.LANCZOS) if max(rgb.size) > size else None
    if max(rgb.size) < size:
        scale = size / max(rgb.size)
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                         Image.Resampling.BICUBIC)
    out = Image.new("RGB", (size, size), (255, 255, 255))
    out.paste(rgb, ((size - rgb.width) // 2, (size - rgb.height) // 2))
    return np.asarray(out, dtype=np.uint8)


def render_svg(svg: str, size: int = IMAGE_SIZE) -> np.ndarray:
    """Render an SVG string to a ``size`` x ``size`` RGB uint8 array on white (needs ``resvg-py``)."""
    try:
        import resvg_py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataFetchError("rendering SVG needs the `resvg-py` package: pip install resvg-py") from exc
    m = re.search(r'viewBox="[-\d.]+ [-\d.]+ ([\d.]+) ([\d.]+)"', svg)
    w, h = (float(m.group(1)), float(m.group(2))) if m else (1.0, 1.0)
    scale = size / max(w, h)
    png = resvg_py.svg_to_bytes(svg_string=svg, width=max(1, round(w * scale)), height=max(1, round(h * scale)))
    return to_rgb_on_white(Image.open(io.BytesIO(bytes(png))), size)


__all__ = ["IMAGE_SIZE", "render_svg", "to_rgb_on_white"]
