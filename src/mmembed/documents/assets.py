"""The assets directory: rendered page images, rendered SVGs and decoded inline images, as PNG files.

Records reference these files by path (never base64 in metadata). Files are content-addressed
(``<sha256[:2]>/<sha256>.png``), so re-indexing writes nothing new, two identical pages share one file, and a
half-written file can never be mistaken for a finished one (written to a temporary name, then renamed).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image


class Assets:
    """A directory the user controls where rendered images are written."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def put_png(self, data: bytes) -> tuple[Path, str]:
        """Store PNG bytes; return (path, sha256)."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / digest[:2] / f"{digest}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return path, digest

    def put_image(self, img: Image.Image) -> tuple[Path, str]:
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=False, compress_level=3)
        return self.put_png(buf.getvalue())

    def __repr__(self) -> str:
        return f"Assets({str(self.root)!r})"


def default_assets_dir(db: str | os.PathLike[str]) -> Path:
    """Beside an embedded database ``DIR``: ``DIR_assets``."""
    p = Path(db).expanduser().resolve()
    return p.with_name(p.name + "_assets")
