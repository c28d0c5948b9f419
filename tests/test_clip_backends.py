"""The local CLIP-family backends on tiny randomly initialised models built here.

Hugging Face CLIP and SigLIP models (with a tiny word-level tokenizer made with the ``tokenizers`` library
and the PIL image processors) are saved to a temporary directory and loaded through ``mmembed.load_encoder``,
then checked against the raw model's own outputs. open_clip tests run for real when open_clip imports
(it needs torchvision, kept out of the default install) and skip with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import mmembed
from mmembed.encoders.clip import (
    CHARS_PER_TOKEN_BUDGET,
    HFClipEncoder,
    OpenClipEncoder,
    PilPreprocess,
    bounded_text,
    item_text,
)
from mmembed.errors import ImageLoadError, InputError, ModelLoadError

WORDS = (
    "a an the photo picture drawing of cat dog red green blue apple car house tree sea "
    "find retrieve image that matches caption this with"
).split()
SPECIALS = {"<pad>": 0, "<bos>": 1, "<unk>": 2, "<eos>": 3}  # eos must not be 2 (CLIP's legacy argmax pooling)
MAX_LEN = 16
INSTR = "retrieve an image that matches the caption"

#: (embed text, embed image) with the raw model: the reference the encoder is checked against
Raw = tuple[Callable[[str], np.ndarray], Callable[[Image.Image], np.ndarray]]


def _tokenizer() -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = dict(SPECIALS)
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", 1), ("<eos>", 3)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=MAX_LEN)


def _text_cfg(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=MAX_LEN, eos_token_id=3, bos_token_id=1,
                pad_token_id=0)


VISION_CFG = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8)


def build_hf(kind: str, dest: Path, seed: int = 0) -> Path:
    """Save a tiny random CLIPModel or SiglipModel with its tokenizer and PIL image processor to ``dest``."""
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    if kind == "clip":
        from transformers import CLIPImageProcessor

        model = CLIPModel(CLIPConfig(text_config=_text_cfg(len(tokenizer)), vision_config=VISION_CFG,
                                     projection_dim=24))
        proc_kwargs = dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        proc_cls = _pil_processor("clip", "CLIPImageProcessor", CLIPImageProcessor)
    elif kind == "siglip2":
        from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model

        vision = {k: v for k, v in VISION_CFG.items() if k != "image_size"}
        model = Siglip2Model(Siglip2Config(text_config=_text_cfg(len(tokenizer)),
                                           vision_config=dict(vision, num_patches=16)))
        proc_kwargs = dict(patch_size=8, max_num_patches=16)
        proc_cls = _pil_processor("siglip2", "Siglip2ImageProcessor", Siglip2ImageProcessor)
    else:
        from transformers import SiglipImageProcessor

        model = SiglipModel(SiglipConfig(text_config=_text_cfg(len(tokenizer)), vision_config=VISION_CFG))
        proc_kwargs = dict(size={"height": 32, "width": 32})
        proc_cls = _pil_processor("siglip", "SiglipImageProcessor", SiglipImageProcessor)
    model.eval().save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    proc_cls(**proc_kwargs).save_pretrained(dest)
    return dest


def _pil_processor(module: str, name: str, fallback: type) -> type:
    """transformers 5 names the Pillow processors ``...Pil``; in 4.x the plain class is the Pillow one."""
    import importlib

    try:
        mod = importlib.import_module(f"transformers.models.{module}.image_processing_pil_{module}")
        return getattr(mod, f"{name}Pil")
    except (ImportError, AttributeError):
        return fallback


@pytest.fixture(scope="module", params=["clip", "siglip"])
def hf_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_hf(request.param, tmp_path_factory.mktemp(request.param) / f"tiny-{request.param}")


@pytest.fixture(scope="module")
def hf_enc(hf_dir: Path) -> HFClipEncoder:
    enc = mmembed.load_encoder(hf_dir)
    assert isinstance(enc, HFClipEncoder)
    return enc


@pytest.fixture(scope="module")
def raw(hf_dir: Path) -> Raw:
    """The same saved model used directly through transformers, as the reference."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(hf_dir, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    proc = AutoImageProcessor.from_pretrained(hf_dir, local_files_only=True, backend="pil")
    siglip = model.config.model_type == "siglip"

    def pooled(out: Any) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def text(t: str) -> np.ndarray:
        enc = tok([t], padding="max_length" if siglip else True, truncation=True, max_length=MAX_LEN,
                  return_tensors="pt")
        with torch.no_grad():
            v = pooled(model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]))
        return v[0].numpy()

    def image(img: Image.Image) -> np.ndarray:
        px = proc(images=[img], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            return pooled(model.get_image_features(pixel_values=px))[0].numpy()

    return text, image


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def noise_image(seed: int, size: tuple[int, int] = (40, 52)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def img_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("imgs")
    paths = []
    for i, size in enumerate([(40, 52), (64, 30), (33, 33)]):
        p = d / f"img{i}.png"
        noise_image(i, size).save(p)
        paths.append(p)
    return paths


# ---- loading -------------------------------------------------------------------------------------------
def test_loads_through_registry_with_name_and_dim(hf_dir: Path, hf_enc: HFClipEncoder) -> None:
    assert hf_enc.name.startswith(f"hf-clip:{hf_dir.name}@")
    assert len(hf_enc.name.rsplit("@", 1)[1]) == 12
    assert hf_enc.dim == (24 if "clip" in hf_dir.name and "siglip" not in hf_dir.name else 32)
    assert hf_enc.info() == {"encoder": hf_enc.name, "dim": hf_enc.dim}
    assert type(hf_enc.image_processor).__module__.split(".")[-1].startswith("image_processing_pil_")
    assert hf_enc.max_text_tokens == MAX_LEN


def test_name_changes_with_the_weights(tmp_path: Path, hf_dir: Path, hf_enc: HFClipEncoder) -> None:
    kind = "siglip" if "siglip" in hf_dir.name else "clip"
    other = mmembed.load_encoder(build_hf(kind, tmp_path / hf_dir.name, seed=1))
    assert other.name.split("@")[0] == hf_enc.name.split("@")[0]
    assert other.name != hf_enc.name
    assert not np.allclose(other.encode_documents("a red apple"), hf_enc.encode_documents("a red apple"))


# ---- shapes, normalisation, fusion ---------------------------------------------------------------------
def test_shapes_and_normalisation(hf_enc: HFClipEncoder, img_files: list[Path]) -> None:
    docs = ["a red apple", img_files[0], {"text": "a cat", "image": img_files[1]},
            [img_files[0], "between", img_files[2]]]
    out = hf_enc.encode_documents(docs)
    assert out.shape == (4, hf_enc.dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert hf_enc.encode_queries([]).shape == (0, hf_enc.dim)


def test_fusion_matches_raw_model(hf_enc: HFClipEncoder, raw: Raw, img_files: list[Path]) -> None:
    text, image = raw
    imgs = [Image.open(p).convert("RGB") for p in img_files]
    t = unit(text("a red apple"))
    i0, i1 = unit(image(imgs[0])), unit(image(imgs[1]))
    out = hf_enc.encode_documents([
        "a red apple",
        img_files[0],
        {"text": "a red apple", "image": img_files[0]},
        {"text": "a red apple", "images": [img_files[0], img_files[1]]},
        [img_files[0], img_files[1]],
    ])
    np.testing.assert_allclose(out[0], t, atol=1e-5)
    np.testing.assert_allclose(out[1], i0, atol=1e-5)
    np.testing.assert_allclose(out[2], unit(t + i0), atol=1e-5)
    np.testing.assert_allclose(out[3], unit(t + unit((i0 + i1) / 2)), atol=1e-5)
    np.testing.assert_allclose(out[4], unit((i0 + i1) / 2), atol=1e-5)
    # and the fused vector really is neither part alone
    assert not np.allclose(out[2], out[0], atol=1e-3) and not np.allclose(out[2], out[1], atol=1e-3)


def test_several_text_parts_are_joined(hf_enc: HFClipEncoder, raw: Raw, img_files: list[Path]) -> None:
    text, image = raw
    out = hf_enc.encode_documents([["a red", img_files[0], "apple"]])
    expected = unit(unit(text("a red apple")) + unit(image(Image.open(img_files[0]).convert("RGB"))))
    np.testing.assert_allclose(out[0], expected, atol=1e-5)


# ---- instructions --------------------------------------------------------------------------------------
def test_instruction_prefixes_queries_not_documents(hf_enc: HFClipEncoder, raw: Raw, img_files: list[Path]) -> None:
    text, image = raw
    plain_q = hf_enc.encode_queries(["a red apple"])
    doc = hf_enc.encode_documents(["a red apple"])
    np.testing.assert_allclose(plain_q, doc, atol=1e-6)  # no instruction: a query is embedded like a document
    q = hf_enc.encode_queries(["a red apple"], instruction=INSTR)
    np.testing.assert_allclose(q[0], unit(text(f"{INSTR} a red apple")), atol=1e-5)
    assert not np.allclose(q, doc, atol=1e-3)
    # a registered task resolves to its instruction text
    task = mmembed.get_task("text->image")
    np.testing.assert_allclose(hf_enc.encode_queries(["a red apple"], task="text->image")[0],
                               unit(text(f"{task.instruction} a red apple")), atol=1e-5)


def test_image_only_query_fuses_the_instruction(hf_enc: HFClipEncoder, raw: Raw, img_files: list[Path]) -> None:
    text, image = raw
    i0 = unit(image(Image.open(img_files[0]).convert("RGB")))
    q = hf_enc.encode_queries([img_files[0]], instruction=INSTR)
    np.testing.assert_allclose(q[0], unit(unit(text(INSTR)) + i0), atol=1e-5)
    np.testing.assert_allclose(hf_enc.encode_queries([img_files[0]])[0], i0, atol=1e-5)
    np.testing.assert_allclose(hf_enc.encode_documents([img_files[0]])[0], i0, atol=1e-5)


def test_item_text_rules() -> None:
    item = mmembed.coerce([" a red ", {"type": "image", "image": b"x"}, "apple "])
    assert item_text(item, None) == "a red apple"
    assert item_text(item, "find it") == "find it a red apple"
    only_image = mmembed.coerce({"image": b"x"})
    assert item_text(only_image, None) is None
    assert item_text(only_image, "find it") == "find it"


# ---- batching, determinism, truncation -----------------------------------------------------------------
def test_batch_equals_single_and_is_deterministic(hf_enc: HFClipEncoder, img_files: list[Path]) -> None:
    docs = ["a cat", "the blue sea with a house and a tree", img_files[0],
            {"text": "a dog", "image": img_files[1]}, "a photo of a green car"]
    together = hf_enc.encode_documents(docs, batch_size=8)
    one_by_one = np.concatenate([hf_enc.encode_documents([d]) for d in docs])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_array_equal(hf_enc.encode_documents(docs, batch_size=8), together)
    np.testing.assert_allclose(hf_enc.encode_documents(docs, batch_size=2), together, atol=1e-5)


def test_megabyte_text_is_truncated_fast(hf_enc: HFClipEncoder) -> None:
    words = " ".join(WORDS[i % len(WORDS)] for i in range(200_000))
    assert len(words) > 1_000_000
    start = time.perf_counter()
    long_vec = hf_enc.encode_documents([words])
    assert time.perf_counter() - start < 5
    # only the first MAX_LEN - 2 words reach the model, so any text sharing them embeds the same
    head = " ".join(words.split()[: MAX_LEN + 3])
    np.testing.assert_allclose(long_vec, hf_enc.encode_documents([head]), atol=1e-5)
    assert not np.allclose(long_vec, hf_enc.encode_documents([" ".join(words.split()[:3])]), atol=1e-3)


def test_bounded_text_keeps_the_tokens_the_model_sees() -> None:
    def count(s: str) -> int:
        return len(s.split())

    short = "word " * 10
    assert bounded_text(short, 8, count) is short
    long = "word " * 10_000
    cut = bounded_text(long, 8, count)
    assert len(cut) == 8 * CHARS_PER_TOKEN_BUDGET and cut.split()[:8] == long.split()[:8]
    # mostly whitespace: the budget would hold too few tokens, so the whole text is kept
    sparse = " " * 100_000 + "a b c d e f g h i j"
    assert bounded_text(sparse, 8, count) is sparse


def test_siglip2_variable_resolution_inputs_reach_the_model(tmp_path: Path, img_files: list[Path]) -> None:
    """SigLIP2's processor returns patches plus a patch mask and shapes: all of it must reach the model."""
    from transformers import AutoImageProcessor, AutoModel

    d = build_hf("siglip2", tmp_path / "tiny-siglip2")
    enc = mmembed.load_encoder(d)
    assert isinstance(enc, HFClipEncoder) and enc.dim == 32 and enc.pad_to_max_length
    model = AutoModel.from_pretrained(d, local_files_only=True).eval()
    proc = AutoImageProcessor.from_pretrained(d, local_files_only=True, backend="pil")
    img = Image.open(img_files[1]).convert("RGB")
    feats = proc(images=[img], return_tensors="pt")
    assert {"pixel_attention_mask", "spatial_shapes"} <= set(feats)
    with torch.no_grad():
        out = model.get_image_features(**feats)
    ref = out if isinstance(out, torch.Tensor) else out.pooler_output
    np.testing.assert_allclose(enc.encode_documents([img_files[1]])[0], unit(ref[0].numpy()), atol=1e-5)
    docs = ["a cat", img_files[0], {"text": "a dog", "image": img_files[1]}]
    np.testing.assert_allclose(enc.encode_documents(docs),
                               np.concatenate([enc.encode_documents([x]) for x in docs]), atol=1e-5)


# ---- bad inputs and bad directories --------------------------------------------------------------------
def test_missing_image_names_the_input(hf_enc: HFClipEncoder, tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError) as info:
        hf_enc.encode_documents(["fine", {"text": "x", "image": missing}])
    assert "document #1" in str(info.value) and "nope.png" in str(info.value)


def test_empty_text_is_an_input_error(hf_enc: HFClipEncoder) -> None:
    with pytest.raises(InputError, match="query #1"):
        hf_enc.encode_queries(["a cat", "   "])
    with pytest.raises(InputError):
        hf_enc.encode_documents([""])


def test_corrupt_image_bytes(hf_enc: HFClipEncoder) -> None:
    with pytest.raises(ImageLoadError, match="document #0"):
        hf_enc.encode_documents([{"image": b"not an image at all"}])


def test_directory_without_weights_is_refused(tmp_path: Path) -> None:
    d = build_hf("clip", tmp_path / "m")
    (d / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no weights"):
        mmembed.load_encoder(d)


def test_directory_without_tokenizer_is_refused(tmp_path: Path) -> None:
    d = build_hf("clip", tmp_path / "m")
    for f in d.glob("tokenizer*"):
        f.unlink()
    with pytest.raises(ModelLoadError, match="tokenizer"):
        mmembed.load_encoder(d)


def test_directory_without_image_processor_is_refused(tmp_path: Path) -> None:
    d = build_hf("siglip", tmp_path / "m")
    (d / "preprocessor_config.json").unlink()
    with pytest.raises(ModelLoadError, match="image processor"):
        mmembed.load_encoder(d)


def test_unknown_option_is_refused(hf_dir: Path) -> None:
    with pytest.raises(TypeError, match="colour"):
        mmembed.load_encoder(hf_dir, colour="red")


def test_remote_policy_is_passed_through(hf_dir: Path) -> None:
    enc = mmembed.load_encoder(hf_dir, allow_remote=True)
    assert enc.image_policy.allow_remote and not enc.image_policy.allow_private_addresses
    with pytest.raises(ImageLoadError, match="remote"):
        mmembed.load_encoder(hf_dir).encode_documents([{"image": "https://example.invalid/cat.png"}])


# ---- open_clip preprocessing (Pillow/numpy only; always runs) ------------------------------------------
def test_pil_preprocess_shortest_edge_center_crop() -> None:
    pre = PilPreprocess(size=32, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    img = Image.new("RGB", (80, 40), (255, 0, 51))
    assert pre.resize_and_crop(img).size == (32, 32)
    out = pre(img)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], (1.0 - 0.5) / 0.5, atol=1e-6)
    np.testing.assert_allclose(out[1], (0.0 - 0.25) / 0.25, atol=1e-6)
    np.testing.assert_allclose(out[2], 0.2, atol=1e-6)
    # the crop keeps the centre: a left/right split image keeps both halves equally
    half = Image.new("RGB", (64, 32), (0, 0, 0))
    half.paste((255, 255, 255), (32, 0, 64, 32))
    cropped = np.asarray(pre.resize_and_crop(half))
    assert cropped[:, :15].max() == 0 and cropped[:, 17:].min() == 255


def test_pil_preprocess_longest_pads_and_squash_stretches() -> None:
    img = Image.new("RGB", (64, 16), (255, 255, 255))
    padded = np.asarray(PilPreprocess(size=32, resize_mode="longest", fill_color=9).resize_and_crop(img))
    assert padded.shape == (32, 32, 3)
    assert (padded[:12] == 9).all() and (padded[-12:] == 9).all() and (padded[12:20] == 255).all()
    squashed = PilPreprocess(size=(24, 40), resize_mode="squash").resize_and_crop(img)
    assert squashed.size == (40, 24)
    with pytest.raises(ModelLoadError):
        PilPreprocess(resize_mode="zoom")


def test_open_clip_dir_without_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"embed_dim": 8}}))
    with pytest.raises(ModelLoadError, match="no open_clip weights"):
        mmembed.load_encoder(tmp_path)


def test_open_clip_hub_text_tower_is_refused(tmp_path: Path) -> None:
    cfg = {"model_cfg": {"embed_dim": 8, "text_cfg": {"hf_model_name": "no-such-org/no-such-text-model"}}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(cfg))
    (tmp_path / "open_clip_model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ModelLoadError, match="never downloads"):
        mmembed.load_encoder(tmp_path)


def _open_clip_or_reason() -> tuple[Any, str]:
    """open_clip, or why it does not import here: not installed (ImportError), or a torchvision built for
    another torch (RuntimeError). Nothing else is caught: any other failure is a test error."""
    try:
        import open_clip
    except (ImportError, RuntimeError) as exc:
        return None, f"open_clip is not importable here ({type(exc).__name__}: {exc}); it needs torchvision"
    return open_clip, ""


def test_open_clip_missing_gives_install_hint(tmp_path: Path) -> None:
    open_clip, _ = _open_clip_or_reason()
    if open_clip is not None:
        pytest.skip("open_clip is importable here; this checks the message given when it is not")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"embed_dim": 8}}))
    (tmp_path / "open_clip_model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ModelLoadError, match="pip install open-clip-torch"):
        mmembed.load_encoder(tmp_path)


# ---- open_clip backend (runs only where open_clip imports) ---------------------------------------------
OC_CFG = {
    "model_cfg": {
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2},
    },
    "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
}


@pytest.fixture(scope="module")
def open_clip_mod() -> Any:
    mod, reason = _open_clip_or_reason()
    if mod is None:
        if os.environ.get("MMEMBED_TORCHVISION_LEG") == "1":  # scripts/test_torchvision_leg.sh: this leg exists for it
            pytest.fail(f"MMEMBED_TORCHVISION_LEG=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return mod


@pytest.fixture(scope="module")
def oc_dir(open_clip_mod: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import save_model

    d = tmp_path_factory.mktemp("oc") / "tiny-open-clip"
    d.mkdir()
    (d / "open_clip_config.json").write_text(json.dumps(OC_CFG))
    torch.manual_seed(0)
    model = open_clip_mod.create_model(f"local-dir:{d}")  # no weights yet: random init
    save_model(model, str(d / "open_clip_model.safetensors"))
    return d


@pytest.fixture(scope="module")
def oc_raw(open_clip_mod: Any, oc_dir: Path) -> tuple[Any, ...]:
    model, _, preprocess = open_clip_mod.create_model_and_transforms(f"local-dir:{oc_dir}")
    model.eval()
    tokenizer = open_clip_mod.get_tokenizer(f"local-dir:{oc_dir}")

    def text(t: str) -> np.ndarray:
        with torch.no_grad():
            return model.encode_text(tokenizer([t]))[0].numpy()

    def image(img: Image.Image) -> np.ndarray:
        with torch.no_grad():
            return model.encode_image(preprocess(img).unsqueeze(0))[0].numpy()

    return text, image, preprocess


def test_open_clip_loads_and_fuses_like_the_raw_model(oc_dir: Path, oc_raw: tuple[Any, ...],
                                                       img_files: list[Path]) -> None:
    text, image, _ = oc_raw
    enc = mmembed.load_encoder(oc_dir)
    assert isinstance(enc, OpenClipEncoder)
    assert enc.name.startswith("open_clip:tiny-open-clip@") and enc.dim == 32 and enc.max_text_tokens == 24
    imgs = [Image.open(p).convert("RGB") for p in img_files]
    t, i0, i1 = unit(text("a red apple")), unit(image(imgs[0])), unit(image(imgs[1]))
    out = enc.encode_documents(["a red apple", img_files[0], {"text": "a red apple", "images": img_files[:2]}])
    np.testing.assert_allclose(out[0], t, atol=1e-5)
    np.testing.assert_allclose(out[1], i0, atol=1e-5)
    np.testing.assert_allclose(out[2], unit(t + unit((i0 + i1) / 2)), atol=1e-5)
    q = enc.encode_queries(["a red apple", img_files[0]], instruction=INSTR)
    np.testing.assert_allclose(q[0], unit(text(f"{INSTR} a red apple")), atol=1e-5)
    np.testing.assert_allclose(q[1], unit(unit(text(INSTR)) + i0), atol=1e-5)


def test_open_clip_preprocess_equals_open_clip_transform(open_clip_mod: Any) -> None:
    for mode in ("shortest", "longest", "squash"):
        for size in (32, (32, 48)):
            for i, shape in enumerate([(50, 37), (37, 50), (20, 11), (32, 32), (101, 99)]):
                img = noise_image(i, shape)
                ref = open_clip_mod.image_transform(size, is_train=False, resize_mode=mode, fill_color=7)(img)
                ours = PilPreprocess(size=size, resize_mode=mode, fill_color=7)(img)
                np.testing.assert_array_equal(ours, ref.numpy(), err_msg=f"{mode} {size} {shape}")


def test_open_clip_batching_truncation_and_bad_inputs(oc_dir: Path, img_files: list[Path], tmp_path: Path) -> None:
    enc = mmembed.load_encoder(oc_dir)
    docs = ["a cat", img_files[2], {"text": "a dog", "image": img_files[1]}, "the blue sea"]
    together = enc.encode_documents(docs)
    np.testing.assert_allclose(together, np.concatenate([enc.encode_documents([d]) for d in docs]), atol=1e-5)
    np.testing.assert_array_equal(enc.encode_documents(docs), together)
    words = " ".join(WORDS[i % len(WORDS)] + str(i % 97) for i in range(150_000))
    assert len(words) > 1_000_000
    start = time.perf_counter()
    long_vec = enc.encode_documents([words])
    assert time.perf_counter() - start < 10
    np.testing.assert_allclose(long_vec, enc.encode_documents([" ".join(words.split()[:40])]), atol=1e-5)
    with pytest.raises(ImageLoadError, match="gone.png"):
        enc.encode_documents([tmp_path / "gone.png"])
    with pytest.raises(InputError):
        enc.encode_queries([" "])
