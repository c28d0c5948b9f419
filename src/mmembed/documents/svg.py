"""Render SVG safely with resvg (Rust; no scripts, no network): standalone SVG files and SVG figures in pages.

resvg itself runs no scripts and fetches nothing over the network, but it would read local files an SVG
points at (``<image href="/etc/...">``) and its XML parser expands entities. So before rendering we refuse:

* DTD entity declarations (``<!ENTITY``: "billion laughs" expansion);
* any reference that is not a fragment (``#id``) or an inline ``data:`` URI: ``href``/``xlink:href``,
  CSS ``url(...)`` and ``@import`` (external references);
* files over ``max_bytes``;

and render at a size that fits ``max_side`` pixels on the longer side (giant ``width``/``height`` cost nothing).
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .model import DocumentError

#: Longer side of a rendered SVG in pixels (an encoder sees a few hundred at most).
DEFAULT_MAX_SIDE = 1024
DEFAULT_MAX_SVG_BYTES = 8 * 1024 * 1024
#: Shorter icons are rendered up to this longer side.
MIN_SIDE = 128

_UNITS = {"": 1.0, "px": 1.0, "pt": 96 / 72, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0,
          "em": 16.0, "ex": 8.0}
_URL = re.compile(r"url\(\s*['\"]?([^'\")\s]*)", re.IGNORECASE)


@dataclass
class RenderedSvg:
    image: Image.Image
    title: str
    width: float
    height: float


def _length(value: str | None) -> float | None:
    if not value:
        return None
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([a-z%]*)\s*", value)
    if not m or m.group(2) == "%":
        return None
    try:
        number = float(m.group(1))
    except ValueError:
        return None
    return number * _UNITS.get(m.group(2), 1.0)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _check_reference(value: str, name: str) -> None:
    v = value.strip()
    if not v or v.startswith("#") or v.lower().startswith("data:"):
        return
    raise DocumentError(f"SVG {name} references an external resource {v[:80]!r}; refused (only #fragment "
                        "and data: references are rendered, so an SVG cannot make the indexer read other files)")


def inspect_svg(data: bytes, name: str, *, max_bytes: int = DEFAULT_MAX_SVG_BYTES) -> tuple[str, float, float, str]:
    """Validate an SVG; return (text, width, height, title+desc). Raises DocumentError naming ``name``."""
    if len(data) > max_bytes:
        raise DocumentError(f"SVG {name} is {len(data)} bytes, over the {max_bytes}-byte cap")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise DocumentError(f"SVG {name} is not UTF-8 or UTF-16 text") from None
    head = text[:65536]
    if re.search(r"<!ENTITY", text, re.IGNORECASE):
        raise DocumentError(f"SVG {name} declares XML entities (<!ENTITY>); refused: entity expansion "
                            "('billion laughs') can exhaust memory")
    if re.search(r"<!DOCTYPE[^>]*\b(SYSTEM|PUBLIC)\b", head, re.IGNORECASE) and "[" in head.split("<svg", 1)[0]:
        raise DocumentError(f"SVG {name} has an internal DTD subset; refused")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DocumentError(f"SVG {name} is not well-formed XML: {exc}") from None
    if _local(root.tag) != "svg":
        raise DocumentError(f"SVG {name}: the root element is <{_local(root.tag)}>, not <svg>")
    title_parts: list[str] = []
    for el in root.iter():
        tag = _local(el.tag) if isinstance(el.tag, str) else ""
        for key, value in el.attrib.items():
            if _local(key) == "href":
                _check_reference(value, name)
            elif "url(" in value:
                for ref in _URL.findall(value):
                    _check_reference(ref, name)
        if tag == "style" and el.text:
            if "@import" in el.text:
                raise DocumentError(f"SVG {name} uses CSS @import; refused (external reference)")
            for ref in _URL.findall(el.text):
                _check_reference(ref, name)
        if tag in ("title", "desc") and el.text and el.text.strip():
            title_parts.append(" ".join(el.text.split()))
    w, h = _length(root.get("width")), _length(root.get("height"))
    vb = (root.get("viewBox") or "").replace(",", " ").split()
    if len(vb) == 4:
        try:
            vw, vh = float(vb[2]), float(vb[3])
        except ValueError:
            vw = vh = 0.0
        if vw > 0 and vh > 0:
            if w is None and h is None:
                w, h = vw, vh
            elif w is None and h is not None:
                w = h * vw / vh
            elif h is None and w is not None:
                h = w * vh / vw
    w, h = (w or 100.0), (h or 100.0)
    if not (w > 0 and h > 0) or w != w or h != h:
        raise DocumentError(f"SVG {name} has no drawable size (width {root.get('width')!r}, height "
                            f"{root.get('height')!r})")
    return text, w, h, " ".join(title_parts)


def render_svg_bytes(data: bytes, name: str, *, max_side: int = DEFAULT_MAX_SIDE,
                     max_bytes: int = DEFAULT_MAX_SVG_BYTES) -> RenderedSvg:
    """Check then render an SVG to an RGB image on white, at most ``max_side`` pixels on its longer side."""
    text, w, h, title = inspect_svg(data, name, max_bytes=max_bytes)
    try:
        import resvg_py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DocumentError(f"rendering SVG {name} needs the `resvg-py` package: pip install 'mmembed[documents]'"
                            ) from exc
    longer = max(w, h)
    # giant declared sizes are scaled down (nothing big is ever allocated); icons are scaled up to be seen
    scale = max_side / longer if longer > max_side else (MIN_SIDE / longer if longer < MIN_SIDE else 1.0)
    out_w, out_h = max(1, round(w * scale)), max(1, round(h * scale))
    if out_w * out_h > max_side * max_side:
        raise DocumentError(f"SVG {name}: {out_w}x{out_h} pixels is over the cap")
    try:
        png = resvg_py.svg_to_bytes(svg_string=text, width=out_w, height=out_h, skip_system_fonts=False,
                                    resources_dir=None)
    except Exception as exc:  # resvg raises a plain exception on SVG it cannot parse
        raise DocumentError(f"SVG {name} could not be rendered: {exc}") from None
    img = Image.open(io.BytesIO(bytes(png)))
    img.load()
    rgba = img.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    return RenderedSvg(image=canvas.convert("RGB"), title=title, width=w, height=h)


def render_svg_file(path: Path, name: str | None = None, **kwargs: int) -> RenderedSvg:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"SVG {name or path} cannot be read: {exc}") from None
    return render_svg_bytes(data, name or str(path), **kwargs)
