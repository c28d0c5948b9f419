"""OCR on the CPU with ``rapidocr-onnxruntime`` 1.4.x, whose ONNX models ship inside the wheel (nothing is
downloaded at run time; the newer ``rapidocr`` 3.x fetches its models on first use and is not used).

Used for PDF pages without a text layer (on by default) and for standalone images with ``ocr=True`` /
``mmembed index --ocr``; the recognised text becomes the item's text next to its image.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .model import DocumentError

#: Images smaller than this on either side hold no readable text; OCR is not run on them.
MIN_OCR_SIDE = 8
#: Lines recognised with a lower confidence are dropped.
MIN_SCORE = 0.5
#: Longer side an image is reduced to before OCR (the detector works at ~960 px anyway).
MAX_OCR_SIDE = 2000


@dataclass
class OcrLine:
    text: str
    score: float
    box: list[list[float]]


class Ocr:
    """A lazily loaded RapidOCR engine shared by every caller in the process (loading takes ~1 s)."""

    _lock = threading.Lock()
    _engine: Any = None

    @classmethod
    def engine(cls) -> Any:
        with cls._lock:
            if cls._engine is None:
                try:
                    from rapidocr_onnxruntime import RapidOCR
                except ImportError as exc:
                    raise DocumentError(
                        "OCR needs the `rapidocr-onnxruntime` package (1.4.x, models inside the wheel): "
                        "pip install 'mmembed[documents]'") from exc
                cls._engine = RapidOCR()
            return cls._engine

    @classmethod
    def lines(cls, image: Image.Image, *, name: str = "image") -> list[OcrLine]:
        """Text lines in RapidOCR's reading order (top to bottom). Blank or tiny images give []."""
        if image.width < MIN_OCR_SIDE or image.height < MIN_OCR_SIDE:
            return []
        img = image.convert("RGB")
        if max(img.size) > MAX_OCR_SIDE:
            img = img.copy()
            img.thumbnail((MAX_OCR_SIDE, MAX_OCR_SIDE))
        arr = np.asarray(img)
        if int(arr.max()) - int(arr.min()) < 8:  # a uniform image: nothing to read
            return []
        try:
            result, _ = cls.engine()(arr[:, :, ::-1].copy())  # RapidOCR takes OpenCV's BGR order
        except DocumentError:
            raise
        except Exception as exc:  # noqa: BLE001 - an OCR failure is reported against the image
            raise DocumentError(f"OCR failed on {name}: {type(exc).__name__}: {exc}") from None
        lines = [OcrLine(str(text), float(score), [list(map(float, pt)) for pt in box])
                 for box, text, score in (result or []) if float(score) >= MIN_SCORE and str(text).strip()]
        return lines

    @classmethod
    def text(cls, image: Image.Image, *, name: str = "image") -> str:
        return "\n".join(line.text for line in cls.lines(image, name=name))


def ocr_text(image: Image.Image, *, name: str = "image") -> str:
    """The text RapidOCR reads in ``image`` (empty for blank or tiny images)."""
    return Ocr.text(image, name=name)
