"""The committed default encoder ``mmembed-mini``: loading, output contract, fusion, adapters, save/load.

Uses the checkpoint shipped in ``src/mmembed/models/mmembed-mini`` (a few MB) on a handful of images drawn
here, so it runs in seconds on a CPU and needs no network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import mmembed
from mmembed.encoders.mini import (
    DEFAULT_DIR,
    MiniEncoder,
    MiniModel,
    TaskAdapter,
    default_config,
    load_default,
    load_mini,
)
from mmembed.errors import ImageLoadError, InputError, ModelLoadError


@pytest.fixture(scope="module")
def enc() -> MiniEncoder:
    """The bundled towers with identity adapters: the fusion and adapter arithmetic is visible on them."""
    return load_default(adapters=False)


@pytest.fixture(scope="module")
def shipped() -> MiniEncoder:
    """The bundled default as users get it, with its fine-tuned task adapters."""
    return load_default()


def _disc(color: str, size: int = 64) -> Image.Image:
    img = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(img).ellipse((8, 8, size - 8, size - 8), fill=color)
    return img


def _square(color: str) -> Image.Image:
    img = Image.new("RGBA", (80, 50), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle((10, 10, 70, 40), fill=color)
    return img


# ---- loading -----------------------------------------------------------------------------------------


def test_default_checkpoint_loads_through_the_registry(shipped: MiniEncoder, enc: MiniEncoder) -> None:
    assert (DEFAULT_DIR / "model.safetensors").is_file() and (DEFAULT_DIR / "MODEL_CARD.md").is_file()
    same = mmembed.load_encoder("mmembed-mini")
    assert isinstance(same, MiniEncoder)
    assert shipped.dim == same.dim == 384
    assert shipped.name.startswith("mmembed-mini-v3-") and shipped.name == same.name
    assert shipped.info() == {"encoder": shipped.name, "dim": 384}
    by_path = mmembed.load_encoder(str(DEFAULT_DIR))
    assert by_path.name == shipped.name
    towers = mmembed.load_encoder("mmembed-mini-towers")  # same file, adapters reset: another name
    assert towers.name == enc.name and towers.name.startswith("mmembed-mini-v3-towers-") and towers.name != shipped.name
    m = shipped.model
    for part in ("text_tower", "image_tower", "query_adapter", "doc_adapter"):
        assert isinstance(getattr(m, part), torch.nn.Module)
    assert not m.training


# ---- output contract ---------------------------------------------------------------------------------


def test_shapes_normalisation_and_determinism(enc: MiniEncoder, tmp_path: Path) -> None:
    path = tmp_path / "sq.png"
    _square("blue").save(path)
    items = ["a red apple", _disc("red"), path, {"text": "a red ball", "image": _disc("red")},
             {"text": "two things", "images": [_disc("red"), _square("blue")]}]
    docs = enc.encode_documents(items, batch_size=2)
    assert docs.shape == (5, 384) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    again = enc.encode_documents(items, batch_size=5)
    np.testing.assert_allclose(docs, again, atol=1e-6)  # deterministic and batch-size independent
    assert enc.encode_documents([]).shape == (0, 384)


def test_interleaved_is_score_fusion_of_text_and_mean_image(enc: MiniEncoder) -> None:
    red, blue = _disc("red"), _square("blue")
    w = enc.model.image_weight  # the committed fusion.image_weight
    t, r, b = enc.encode_documents(["a red ball", red, blue])
    fused = enc.encode_documents([{"text": "a red ball", "image": red}])[0]
    expect = (t + w * r) / np.linalg.norm(t + w * r)
    np.testing.assert_allclose(fused, expect, atol=1e-5)
    two = enc.encode_documents([{"images": [red, blue]}])[0]
    mean = (r + b) / np.linalg.norm(r + b)
    np.testing.assert_allclose(two, mean, atol=1e-5)
    three = enc.encode_documents([["a red ball", red, "and", blue]])[0]
    expect3 = enc.encode_documents(["a red ball\nand"])[0] + w * mean
    np.testing.assert_allclose(three, expect3 / np.linalg.norm(expect3), atol=1e-5)


def test_text_embeddings_are_the_frozen_text_tower(enc: MiniEncoder) -> None:
    q = enc.encode_queries(["a cat", "a kitten", "a truck"])
    assert q[0] @ q[1] > q[0] @ q[2]  # a pretrained text space, not random


def test_images_are_aligned_with_text(enc: MiniEncoder) -> None:
    """The trained image tower places a drawn red heart nearer to 'red heart' than to unrelated captions."""
    img = Image.new("RGB", (96, 96), "white")
    d = ImageDraw.Draw(img)
    d.ellipse((14, 18, 50, 54), fill="red")
    d.ellipse((46, 18, 82, 54), fill="red")
    d.polygon([(16, 42), (80, 42), (48, 84)], fill="red")
    v = enc.encode_documents([img])[0]
    caps = enc.encode_queries(["red heart", "a bicycle", "a computer keyboard", "a soccer ball"])
    assert int(np.argmax(caps @ v)) == 0


# ---- instructions and adapters -----------------------------------------------------------------------


def test_untrained_adapter_is_identity(enc: MiniEncoder) -> None:
    assert enc.model.query_adapter.is_identity() and enc.model.doc_adapter.is_identity()
    plain = enc.encode_queries(["a red apple", _disc("red")])
    instr = enc.encode_queries(["a red apple", _disc("red")], instruction="Retrieve an image of the object.")
    np.testing.assert_allclose(plain, instr, atol=1e-6)
    np.testing.assert_allclose(plain, enc.encode_documents(["a red apple", _disc("red")]), atol=1e-6)


def test_shipped_adapters_steer_a_text_query_to_the_asked_modality(shipped: MiniEncoder, enc: MiniEncoder) -> None:
    """One pool holds a drawn red heart and the caption "red heart" as a text document. The bare towers rank
    the caption first whatever the instruction (modality bias); the shipped adapters follow ``text->image``
    to the image and ``text->text`` to the text, and leave text-only documents as the towers made them."""
    img = Image.new("RGB", (96, 96), "white")
    d = ImageDraw.Draw(img)
    d.ellipse((14, 18, 50, 54), fill="red")
    d.ellipse((46, 18, 82, 54), fill="red")
    d.polygon([(16, 42), (80, 42), (48, 84)], fill="red")
    pool = [img, "red heart", "a bicycle"]
    for e, asked, expect_top in ((enc, "text->image", 1), (shipped, "text->image", 0), (shipped, "text->text", 1)):
        docs = e.encode_documents(pool)
        q = e.encode_queries(["red heart"], task=asked)[0]
        assert int(np.argmax(docs @ q)) == expect_top, (e.name, asked, docs @ q)
    assert not shipped.model.query_adapter.is_identity() and not shipped.model.doc_adapter.is_identity()
    np.testing.assert_array_equal(shipped.encode_documents(["red heart"]), enc.encode_documents(["red heart"]))


def test_adapter_is_effective_when_trained_and_round_trips(enc: MiniEncoder, tmp_path: Path) -> None:
    other = load_mini(DEFAULT_DIR)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for ad in (other.model.query_adapter, other.model.doc_adapter):
            ad.fc2.weight.copy_(torch.randn(ad.fc2.weight.shape, generator=g) * 0.05)
    items = ["a red apple", _disc("red"), {"text": "ball", "image": _disc("red")}]
    plain = other.encode_queries(items)
    a = other.encode_queries(items, instruction="Retrieve an image of the object.")
    b = other.encode_queries(items, instruction="Find a caption that describes the picture.")
    assert not np.allclose(a, plain, atol=1e-3) and not np.allclose(a, b, atol=1e-3)
    assert not np.allclose(other.encode_documents(items), enc.encode_documents(items), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    # save -> load gives identical vectors, adapters included
    out = other.save(tmp_path / "m")
    back = load_mini(out)
    assert isinstance(back, MiniEncoder) and json.loads((out / "mmembed_config.json").read_text())["backend"] == "mini"
    np.testing.assert_array_equal(back.encode_queries(items, instruction="Retrieve an image of the object."), a)
    np.testing.assert_array_equal(back.encode_documents(items), other.encode_documents(items))
    assert back.name != enc.name  # different weights -> a different name, so stores refuse to mix them


def test_save_load_round_trip_identical(enc: MiniEncoder, tmp_path: Path) -> None:
    items = ["a frog", _disc("green"), {"text": "frog", "images": [_disc("green"), _square("blue")]}]
    out = enc.save(tmp_path / "copy")
    back = mmembed.load_encoder(str(out))
    np.testing.assert_array_equal(back.encode_documents(items), enc.encode_documents(items))
    np.testing.assert_array_equal(back.encode_queries(items, task=None), enc.encode_queries(items))


def test_task_adapter_module_contract() -> None:
    ad = TaskAdapter(8, 4)
    v = torch.randn(3, 8)
    assert torch.equal(ad(v), v) and torch.equal(ad(v, torch.randn(8)), v)
    with torch.no_grad():
        ad.fc2.bias.fill_(1.0)
    assert not ad.is_identity() and torch.allclose(ad(v), v + 1)


# ---- bad inputs and bad directories ------------------------------------------------------------------


def test_bad_inputs_name_the_input(enc: MiniEncoder, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="document #1"):
        enc.encode_documents(["fine", 42])
    with pytest.raises(InputError, match="query #0"):
        enc.encode_queries(["   "])
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageLoadError, match="missing.png"):
        enc.encode_documents(["ok", missing])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageLoadError, match="broken.png"):
        enc.encode_queries([{"text": "x", "image": broken}])
    with pytest.raises(InputError, match="batch_size"):
        enc.encode_documents(["x"], batch_size=0)


def test_bad_model_directories(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_mini(tmp_path / "nope")
    d = tmp_path / "d"
    d.mkdir()
    with pytest.raises(ModelLoadError, match="mmembed_config.json"):
        load_mini(d)
    (d / "mmembed_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_mini(d)
    (d / "mmembed_config.json").write_text(json.dumps({"backend": "other"}))
    with pytest.raises(ModelLoadError, match="backend"):
        load_mini(d)
    (d / "mmembed_config.json").write_text(json.dumps(default_config()))
    with pytest.raises(ModelLoadError, match="no weights file"):
        load_mini(d)
    bad_tower = dict(default_config(), text_tower={"kind": "bert"})
    (d / "mmembed_config.json").write_text(json.dumps(bad_tower))
    with pytest.raises(ModelLoadError, match="text tower"):
        load_mini(d)
    # weights of another architecture
    shutil.copy(DEFAULT_DIR / "model.safetensors", d / "model.safetensors")
    cfg = dict(default_config(), image_tower={"widths": [8, 16], "head_hidden": 16})
    (d / "mmembed_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="does not match"):
        load_mini(d)
    (d / "mmembed_config.json").write_text(json.dumps(default_config()))
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_mini(d)
    with pytest.raises(TypeError, match="unexpected keyword"):
        load_mini(DEFAULT_DIR, colour="red")


def test_fresh_model_save_load(tmp_path: Path) -> None:
    """A randomly initialised model (what a trainer starts from) saves and loads to the same vectors."""
    torch.manual_seed(0)
    model = MiniModel(default_config())
    enc = MiniEncoder(model, device="cpu")
    out = enc.save(tmp_path / "fresh", dtype=torch.float16)
    back = load_mini(out)
    x = [_disc("red"), "text"]
    # fp16 storage: the reloaded image tower equals the original rounded to fp16
    with torch.no_grad():
        for p in model.image_tower.parameters():
            p.copy_(p.half().float())
        for name, buf in model.image_tower.named_buffers():
            if buf.is_floating_point():
                buf.copy_(buf.half().float())
    np.testing.assert_allclose(back.encode_documents(x), enc.encode_documents(x), atol=1e-5)


def test_encode_items_is_differentiable_for_trainers() -> None:
    """The path a trainer (issue 10) fine-tunes: adapters and image tower receive gradients."""
    from mmembed.inputs import coerce_many

    m = load_mini(DEFAULT_DIR).model
    m.train()
    items = coerce_many(["a red apple", {"text": "ball", "image": _disc("red")}, _square("blue")])
    q = m.encode_items(items, instruction="Retrieve an image of the object.", is_query=True)
    d = m.encode_items(items, instruction=None, is_query=False)
    assert q.shape == d.shape == (3, 384) and q.requires_grad
    (q * d.detach().flip(0)).sum().backward()
    assert m.query_adapter.fc2.weight.grad is not None and m.query_adapter.fc2.weight.grad.abs().sum() > 0
    assert m.image_tower.head[-1].weight.grad is not None and m.image_tower.head[-1].weight.grad.abs().sum() > 0
    assert m.doc_adapter.fc2.weight.grad is None  # documents were detached


# ---- fusion weight (config "fusion": {"image_weight": w}) ---------------------------------------------


def _with_fusion(tmp_path: Path, fusion: object, *, name: str = "w") -> Path:
    """A copy of the committed checkpoint whose config has ``fusion`` (or none, if ``fusion`` is None)."""
    d = tmp_path / name
    d.mkdir()
    shutil.copy(DEFAULT_DIR / "model.safetensors", d / "model.safetensors")
    cfg = json.loads((DEFAULT_DIR / "mmembed_config.json").read_text())
    cfg.pop("fusion", None)
    if fusion is not None:
        cfg["fusion"] = fusion
    (d / "mmembed_config.json").write_text(json.dumps(cfg))
    return d


def test_committed_config_sets_the_measured_image_weight(enc: MiniEncoder) -> None:
    from mmembed.encoders.mini import DEFAULT_IMAGE_WEIGHT

    cfg = json.loads((DEFAULT_DIR / "mmembed_config.json").read_text())
    assert cfg["fusion"] == {"image_weight": DEFAULT_IMAGE_WEIGHT}
    assert enc.model.image_weight == DEFAULT_IMAGE_WEIGHT < 1.0
    assert default_config()["fusion"] == {"image_weight": DEFAULT_IMAGE_WEIGHT}  # new models get it too


def test_image_weight_is_read_from_config_and_changes_only_fused_vectors(enc: MiniEncoder, tmp_path: Path) -> None:
    red, blue = _disc("red"), _square("blue")
    w03 = load_mini(_with_fusion(tmp_path, {"image_weight": 0.3}, name="w03"), adapters=False)
    w1 = load_mini(_with_fusion(tmp_path, {"image_weight": 1.0}, name="w1"), adapters=False)
    w0 = load_mini(_with_fusion(tmp_path, {"image_weight": 0}, name="w0"), adapters=False)
    assert (w03.model.image_weight, w1.model.image_weight, w0.model.image_weight) == (0.3, 1.0, 0.0)
    single = ["a red ball", red, {"images": [red, blue]}]
    base = w1.encode_documents(single)
    for e in (w03, w0, enc):  # text-only and image-only items do not depend on the weight
        np.testing.assert_array_equal(e.encode_documents(single), base)
        np.testing.assert_array_equal(e.encode_queries(single, task=None), w1.encode_queries(single, task=None))
    t, r = base[0], base[1]
    mean = base[2]
    items = [{"text": "a red ball", "image": red}, {"text": "a red ball", "images": [red, blue]}]
    for e, w in ((w03, 0.3), (w1, 1.0), (w0, 0.0)):
        got = e.encode_documents(items)
        for row, img in zip(got, (r, mean)):
            expect = t + w * img
            np.testing.assert_allclose(row, expect / np.linalg.norm(expect), atol=1e-5)
    np.testing.assert_allclose(w0.encode_documents(items), np.stack([t, t]), atol=1e-6)  # w = 0: the text alone
    assert not np.allclose(w03.encode_documents(items)[0], w1.encode_documents(items)[0], atol=1e-3)
    # vectors of fused items differ, so the name differs and a store built with another fusion is refused
    assert len({w03.name, w1.name, w0.name, enc.name}) == 4


def test_config_without_fusion_keeps_the_old_equal_weights_and_name(tmp_path: Path) -> None:
    import hashlib

    old = load_mini(_with_fusion(tmp_path, None))
    assert old.model.image_weight == 1.0
    digest = hashlib.sha256((DEFAULT_DIR / "model.safetensors").read_bytes()).hexdigest()[:8]
    assert old.name == f"mmembed-mini-v3-{digest}"  # the name it had before the field existed
    assert load_mini(_with_fusion(tmp_path, {"image_weight": 1}, name="one")).name == old.name


def test_encode_items_training_path_uses_the_same_weight(tmp_path: Path) -> None:
    from mmembed.inputs import coerce_many

    e = load_mini(_with_fusion(tmp_path, {"image_weight": 0.25}), adapters=False)
    items = ["a red apple", {"text": "ball", "image": _disc("red")}, _square("blue")]
    served = e.encode_documents(items)
    m = e.model
    with torch.no_grad():  # eval mode: the trainer's path gives exactly what the encoder serves
        np.testing.assert_allclose(m.encode_items(coerce_many(items), instruction=None, is_query=False).numpy(),
                                   served, atol=1e-5)
    m.train()
    d = m.encode_items(coerce_many(items), instruction=None, is_query=False)
    assert d.requires_grad
    # train mode: batch norm uses the batch statistics, so recompute the arithmetic on the same image batch
    from mmembed.encoders.mini import arrays_to_tensor, image_to_array

    t = m.embed_texts(["a red apple", "ball"])
    pix = arrays_to_tensor([image_to_array(img, m.image_size) for img in (_disc("red"), _square("blue"))])
    i = m.embed_images(pix.to(next(m.image_tower.parameters()).dtype))
    expect = torch.stack([t[0], torch.nn.functional.normalize(t[1] + 0.25 * i[0], dim=-1), i[1]])
    torch.testing.assert_close(d.detach(), expect.detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("fusion, match", [
    ({"image_weight": -0.1}, "finite number >= 0"),
    ({"image_weight": "0.3"}, "finite number >= 0"),
    ({"image_weight": float("nan")}, "finite number >= 0"),
    ({"image_weight": True}, "finite number >= 0"),
    ({"image_weight": 0.3, "text_weight": 1}, "unknown \"fusion\" keys"),
    (0.3, "must be an object"),
])
def test_bad_fusion_config_is_refused(tmp_path: Path, fusion: object, match: str) -> None:
    with pytest.raises(ModelLoadError, match=match):
        load_mini(_with_fusion(tmp_path, fusion))
