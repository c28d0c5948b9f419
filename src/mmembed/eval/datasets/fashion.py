"""Fashion-MNIST test split (Debian ``dataset-fashion-mnist``): ``fashion-mnist`` and ``fashion-mnist-inverted``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import MMEmbedError
from .base import DatasetError, EvalDataset, Pool, Subset, _content_tag, sample_indices


#: The dataset's own label names (label index order), lower-cased.
FASHION_MNIST_CLASSES: tuple[str, ...] = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal",
                                          "shirt", "sneaker", "bag", "ankle boot")
_FASHION_SUBDIR = Path("root/usr/share/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"Fashion-MNIST file {path} is missing (is the dataset-fashion-mnist package complete?)")
    from ...data.training_sets import read_idx

    try:
        return read_idx(path)
    except MMEmbedError as exc:
        raise DatasetError(str(exc)) from exc


def fashion_mnist(*, limit: int | None = None, seed: int = 0, root: str | os.PathLike[str] | None = None,
                  invert: bool = False) -> EvalDataset:
    """Zero-shot retrieval on the Fashion-MNIST test split (10,000 28x28 greyscale images, 10 classes).

    ``class->image``: each class name retrieves the images of that class (1,000 positives each).
    ``image->class``: each image retrieves its class name among the ten, so R@1 is zero-shot accuracy.
    Images are given to the encoder as the dataset stores them (light garment on black), or with
    ``invert=True`` as dark garments on white (``255 - pixel``, the catalogue look; dataset
    ``fashion-mnist-inverted``). ``limit`` keeps a fixed random sample of that many test images. ``root``
    is a folder holding the ``t10k-*-idx*-ubyte.gz`` files (default: the fetched Debian package).
    """
    if root is None:
        from ...data.fetch import fetch_deb

        base = fetch_deb("dataset-fashion-mnist") / _FASHION_SUBDIR
    else:
        base = Path(root)
    images = _read_idx(base / "t10k-images-idx3-ubyte.gz")
    labels = _read_idx(base / "t10k-labels-idx1-ubyte.gz")
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetError(f"Fashion-MNIST test files disagree: images {images.shape}, labels {labels.shape}")
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DatasetError(f"Fashion-MNIST label {int(labels.max())} is outside the 10 classes")
    keep = sample_indices(labels.shape[0], limit, seed)
    from PIL import Image

    pictures = [Image.fromarray(255 - images[i] if invert else images[i], mode="L") for i in keep]
    kept_labels = labels[keep]
    ids = [f"t10k-{i}" for i in keep]
    pool = Pool(key=f"fashion-mnist-images:{_content_tag([base, invert, *ids])}", items=pictures, ids=ids)
    present = [c for c in range(len(FASHION_MNIST_CLASSES)) if (kept_labels == c).any()]
    class_q = [FASHION_MNIST_CLASSES[c] for c in present]
    class_rel = [tuple(int(j) for j in np.flatnonzero(kept_labels == c)) for c in present]
    c2i = Subset("class->image", class_q, class_rel, pool, "text->image", query_ids=class_q,
                 query_texts=list(class_q))
    names = Pool(key="fashion-mnist-classes", items=list(FASHION_MNIST_CLASSES),
                 ids=list(FASHION_MNIST_CLASSES), texts=list(FASHION_MNIST_CLASSES))
    i2c = Subset("image->class", list(pictures), [(int(c),) for c in kept_labels], names, "image->text",
                 query_ids=ids)
    return EvalDataset("fashion-mnist-inverted" if invert else "fashion-mnist", [c2i, i2c],
                       source="Debian dataset-fashion-mnist (MIT), test split",
                       description=f"{len(keep)} test images ({'dark on white' if invert else 'light on black'}), "
                                   f"{len(present)} classes")


def fashion_mnist_inverted(*, limit: int | None = None, seed: int = 0,
                           root: str | os.PathLike[str] | None = None) -> EvalDataset:
    """Fashion-MNIST as above with the images inverted: dark garments on white, like catalogue pictures."""
    return fashion_mnist(limit=limit, seed=seed, root=root, invert=True)
