"""The reusable contrastive trainer and augmentation of ``mmembed.train.mini`` on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmembed.encoders.mini import ImageTower
from mmembed.train.mini import TrainConfig, _recall, augment, train_contrastive


def _toy_set(n_concepts: int = 8, per: int = 4) -> tuple[np.ndarray, torch.Tensor, np.ndarray, np.ndarray]:
    """Each concept is a coloured square at its own place; targets are random orthogonal-ish vectors."""
    rng = np.random.default_rng(0)
    images = np.full((n_concepts * per, 32, 32, 3), 255, dtype=np.uint8)
    concepts = np.repeat(np.arange(n_concepts), per)
    for i, c in enumerate(concepts):
        y, x = divmod(int(c), 4)
        images[i, 4 + y * 12: 14 + y * 12, 2 + x * 7: 8 + x * 7] = rng.integers(0, 60, 3)
    targets = F.normalize(torch.randn(n_concepts, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    return images, targets, concepts.copy(), concepts


def test_augment_shapes_range_and_white_padding() -> None:
    x = torch.ones(4, 3, 32, 32)
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    # a white image stays (nearly) white: padding is white, not black
    assert out.mean() > 0.8
    y = torch.zeros(2, 3, 32, 32)
    y[:, :, 8:24, 8:24] = 1
    a = augment(y, torch.Generator().manual_seed(1))
    b = augment(y, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)  # seeded


def test_train_contrastive_learns_and_is_seeded() -> None:
    images, targets, tidx, concepts = _toy_set()

    def run() -> tuple[ImageTower, float]:
        torch.manual_seed(0)
        tower = ImageTower(widths=(8, 16, 32), dim=16, head_hidden=32)
        cfg = TrainConfig(max_epochs=40, batch_size=16, lr=3e-3, warmup_steps=5, bf16=False, augment=False,
                          seed=0, log_every=1000)
        res = train_contrastive(tower, images, targets, tidx, concepts, cfg, log=None)
        return tower, res.final_loss

    tower, loss = run()
    with torch.no_grad():
        emb = F.normalize(tower(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255), dim=-1)
    acc = float(((emb @ targets.T).argmax(1).numpy() == tidx).mean())
    assert acc > 0.9, acc
    _, loss2 = run()
    assert loss == pytest.approx(loss2, rel=1e-5)


def test_train_contrastive_rejects_mismatched_inputs() -> None:
    images, targets, tidx, concepts = _toy_set()
    with pytest.raises(ValueError, match="one target index"):
        train_contrastive(ImageTower((8, 16), 16, 16), images, targets, tidx[:-1], concepts, TrainConfig(),
                          log=None)


def test_recall_counts_any_relevant_item() -> None:
    sims = np.array([[0.9, 0.1, 0.5], [0.1, 0.2, 0.3]])
    r = _recall(sims, [{2}, {2}], ks=(1, 2))
    assert r == {"R@1": 0.5, "R@2": 1.0}


def test_train_contrastive_needs_a_budget() -> None:
    images, targets, tidx, concepts = _toy_set()
    with pytest.raises(ValueError, match="budget"):
        train_contrastive(ImageTower((8, 16), 16, 16), images, targets, tidx, concepts,
                          TrainConfig(minutes=None, max_epochs=None), log=None)
