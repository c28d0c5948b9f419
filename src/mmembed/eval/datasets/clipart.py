"""``openclipart-dev``: the held-back development slice of the Open Clip Art Library (Debian
``openclipart-svg``, public domain), for choosing among training levers without touching the evaluation sets.

One concept in ten (by a hash of the normalised title, :func:`mmembed.data.openclipart.is_dev_concept`) is
never trained on; its drawings, less those that are near-duplicates of a Tux Paint stamp, are rendered once
to PNG in the cache and asked as ``tuxpaint`` asks its stamps: title -> drawing and drawing -> title.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import DatasetError, EvalDataset


@dataclass(frozen=True)
class _Rendered:
    id: str
    image_path: Path
    caption: str


def openclipart_dev_drawings() -> list[_Rendered]:
    """The development slice as stamp-like records (rendered to PNG once, in the cache)."""
    from PIL import Image

    from ...data import openclipart as oc
    from ...data.fetch import cache_dir
    from ...data.render import IMAGE_SIZE

    out_dir = cache_dir() / "eval" / f"openclipart-dev-{IMAGE_SIZE}-v2"
    listing = out_dir / "drawings.tsv"
    if not listing.is_file():  # parse, render and check the drawings only once
        kept, _, _ = oc.without_tuxpaint_duplicates([d for d in oc.load_drawings(oc.openclipart_root()) if d.dev])
        out_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        for d, image in kept:
            name = d.id.replace("/", "__") + ".png"
            Image.fromarray(image).save(out_dir / name)
            lines.append(f"{d.id}\t{name}\t{d.title}")
        tmp = listing.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(listing)
    rows = [ln.split("\t") for ln in listing.read_text(encoding="utf-8").splitlines() if ln]
    return [_Rendered(i, out_dir / n, t) for i, n, t in rows]


def openclipart_dev(*, limit: int | None = None, seed: int = 0) -> EvalDataset:
    """Title -> drawing and drawing -> title over the held-back Open Clip Art slice (development only)."""
    from .stamps import tuxpaint

    drawings = openclipart_dev_drawings()
    if not drawings:
        raise DatasetError("the Open Clip Art development slice is empty")
    ds = tuxpaint(limit=limit, seed=seed, stamps=drawings)
    return EvalDataset("openclipart-dev", ds.subsets,
                       source="Debian openclipart-svg (public domain), held-back development slice",
                       description=ds.description.replace("clip-art stamps", "held-back clip-art drawings"))
