"""The MM-Embed backend on a tiny random model saved in the hub layout (tests/tiny_mmembed.py).

Everything goes through ``mmembed.load_encoder(path)`` as a user would; nothing is mocked. The tiny model
has the real architecture (CLIP tower, LLaVA-NeXT projector + image newline, bidirectional Mistral,
latent-attention pooling) at small sizes: one image = 16 patch tokens + 1 newline token.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

import tiny_mmembed as tiny  # noqa: E402

import mmembed  # noqa: E402
from mmembed import ModelLoadError, coerce  # noqa: E402
from mmembed.encoders import detect_backend  # noqa: E402

INSTR = "find me an everyday image that matches the given caption"


def _img(seed: int, size: tuple[int, int] = (40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_tiny_mmembed(tmp_path_factory.mktemp("tiny-mm-embed"))


@pytest.fixture(scope="module")
def enc(ckpt: Path):
    return mmembed.load_encoder(ckpt)


def _hub_ids(enc, prompt: str) -> list[int]:
    """What the hub's processor produces for ``prompt``: BOS + tokens + EOS (one id per <image>)."""
    tok = enc.tokenizer.tok
    return [tok.token_to_id("<s>")] + tok.encode(prompt, add_special_tokens=False).ids + [tok.token_to_id("</s>")]


def _collapse(batch, row: int = 0) -> list[int]:
    """The prepared ids of one row with each expanded image back to one id and padding dropped."""
    ids = batch.input_ids[row][batch.attention_mask[row]].tolist()
    img = batch.image_mask[row][batch.attention_mask[row]].tolist()
    out: list[int] = []
    for i, (t, is_img) in enumerate(zip(ids, img)):
        if is_img and i and img[i - 1]:
            continue
        out.append(t)
    return out


# ---- loading, shapes, normalisation ---------------------------------------------------------------------
def test_hub_layout_is_detected_and_loads_without_remote_code(ckpt: Path, enc) -> None:
    assert detect_backend(ckpt) == "mm-embed"
    assert type(enc).__name__ == "MMEmbedEncoder"
    assert enc.dim == tiny.TEXT["hidden"]
    assert enc.name.startswith("mm-embed:")
    assert enc.model.spec.image_tokens == tiny.IMAGE_TOKENS
    assert not (ckpt / "modeling_nvmmembed.py").exists()  # nothing to trust: the layout has no code
    # the hub runs NV-Embed-v1's Mistral (RoPE base 10000), whatever text_config says (1e6 here)
    assert enc.model.spec.text.rope_parameters["rope_theta"] == 10000.0
    assert all(not layer.self_attn.is_causal for layer in enc.model.language_model.layers)


def test_shapes_and_normalisation(enc) -> None:
    img = _img(0)
    q = enc.encode_queries(["a red car", {"text": "find the cat", "image": img}, img], instruction=INSTR)
    d = enc.encode_documents(["a red car", img, [img, "the dog", _img(1)]])
    assert q.shape == (3, enc.dim) and d.shape == (3, enc.dim)
    assert q.dtype == np.float32 and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(q).all() and np.isfinite(d).all()
    # distinct inputs give distinct vectors
    assert np.abs(d[0] - d[1]).max() > 1e-3 and np.abs(d[1] - d[2]).max() > 1e-3


# ---- prompt format and image placement --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "is_query", "instruction", "hub_prompt"),
    [
        ({"text": "the red car", "image": "IMG"}, True, INSTR, f"Instruct: {INSTR}\nQuery: <image>\nthe red car"),
        ({"text": "the red car", "image": "IMG"}, True, None, "Query: <image>\nthe red car"),
        ("the red car", True, INSTR, f"Instruct: {INSTR}\nQuery: the red car"),
        ("IMG", True, INSTR, f"Instruct: {INSTR}\nQuery: <image>\n"),
        ({"text": "the red car", "image": "IMG"}, False, None, "<image>\nthe red car"),
        ("the red car", False, None, "the red car"),
        ("IMG", False, None, "<image>\n"),
    ],
)
def test_prompts_match_the_hub_template(enc, value, is_query, instruction, hub_prompt) -> None:
    img = _img(2)
    if value == "IMG":
        value = img
    elif isinstance(value, dict):
        value = {"text": value["text"], "image": img}
    batch = enc.prepare([coerce(value)], instruction=instruction, is_query=is_query)
    assert _collapse(batch) == _hub_ids(enc, hub_prompt)


def test_image_tokens_are_expanded_in_place(enc) -> None:
    item = coerce(["the dog", _img(3), "a cat"])  # extension: an image between two texts
    batch = enc.prepare([item], instruction=None, is_query=False)
    tok = enc.tokenizer.tok
    ids = batch.input_ids[0].tolist()
    mask = batch.image_mask[0]
    start = tok.encode("the dog\n", add_special_tokens=False).ids
    n_before = 1 + len(start)  # BOS + "the dog" + newline
    assert ids[:n_before] == [tok.token_to_id("<s>")] + start
    assert mask[:n_before].sum() == 0
    assert bool(mask[n_before : n_before + tiny.IMAGE_TOKENS].all())
    assert int(mask.sum()) == tiny.IMAGE_TOKENS
    after = tok.encode("\na cat", add_special_tokens=False).ids + [tok.token_to_id("</s>")]
    assert ids[n_before + tiny.IMAGE_TOKENS :] == after
    # the slots hold the projected CLIP patches followed by the learnt image-newline vector
    with torch.inference_mode():
        embeds = enc.model.input_embeddings(batch)
        feats = enc.model.image_features(batch.pixel_values)
    block = embeds[0, n_before : n_before + tiny.IMAGE_TOKENS]
    torch.testing.assert_close(block, feats[0])
    torch.testing.assert_close(block[-1], enc.model.image_newline)
    text_embed = enc.model.language_model.get_input_embeddings().weight
    torch.testing.assert_close(embeds[0, 0], text_embed[tok.token_to_id("<s>")])


def test_global_patch_matches_transformers_llava_next_processor(enc) -> None:
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    cfg = {k: v for k, v in tiny.preprocessor_json().items() if k not in ("image_processor_type", "processor_class")}
    img = _img(4, (70, 45))
    reference = LlavaNextImageProcessorPil(**cfg)(img, return_tensors="pt")["pixel_values"][0, 0]
    torch.testing.assert_close(enc.images([img])[0], reference, rtol=0, atol=0)


# ---- instruction handling ------------------------------------------------------------------------------
def test_instruction_is_excluded_from_pooling(enc) -> None:
    """Precise property: a query vector is the normalised mean of g(h_t) over positions t >= k only, where
    h_t is the language model's output at t, g the per-token latent-attention block and k the hub's
    instruction length (BOS + tokens of "Instruct: ..." + 1, ending on the newline before "Query:").
    So overwriting h_t for t < k with anything leaves the vector bit-for-bit unchanged; the instruction can
    move the vector only through attention, i.e. through h_t for t >= k."""
    batch = enc.prepare([coerce({"text": "the red car", "image": _img(5)})], instruction=INSTR, is_query=True)
    k = batch.instruction_lengths[0]
    tok = enc.tokenizer.tok
    assert k == 1 + len(tok.encode(f"Instruct: {INSTR}", add_special_tokens=False).ids) + 1
    assert tok.id_to_token(batch.input_ids[0, k - 1].item()) == "\n"
    assert tok.id_to_token(batch.input_ids[0, k].item()) == "query"
    assert not batch.pool_mask[0, :k].any() and batch.pool_mask[0, k:].all()

    def run(corrupt: slice | None) -> torch.Tensor:
        def hook(module, args, output):
            h = output.last_hidden_state.clone()
            h[:, corrupt] = 100.0 * torch.randn_like(h[:, corrupt])
            output.last_hidden_state = h
            return output

        handle = enc.model.language_model.register_forward_hook(hook) if corrupt else None
        try:
            with torch.inference_mode():
                return enc.model(batch)
        finally:
            if handle is not None:
                handle.remove()

    clean = run(None)
    assert torch.equal(run(slice(0, k)), clean)  # instruction positions do not reach the pooled vector
    assert not torch.allclose(run(slice(k, k + 1)), clean)  # but the first pooled position does
    with torch.inference_mode():
        h = enc.model.hidden_states(batch)
        expected = enc.model.pooler.transform_tokens(h[0, k:]).mean(0)
        with_instruction = enc.model.pooler.transform_tokens(h[0]).mean(0)
    torch.testing.assert_close(clean[0], expected)
    assert not torch.allclose(clean[0], with_instruction)


def test_instruction_changes_query_vectors(enc) -> None:
    items = ["the red car", {"text": "the red car", "image": _img(6)}]
    a = enc.encode_queries(items, instruction=INSTR)
    b = enc.encode_queries(items, instruction="retrieve a wikipedia passage that answers the question")
    plain = enc.encode_queries(items)
    doc = enc.encode_documents(items)
    for other in (b, plain, doc):
        assert np.abs(a - other).max() > 1e-3
    assert np.abs(plain - doc).max() > 1e-3  # "Query: " prefix makes queries differ from documents
    # documents never get an instruction: the document path ignores it
    batch = enc.prepare([coerce("the red car")], instruction=INSTR, is_query=False)
    assert batch.instruction_lengths == [0] and _collapse(batch) == _hub_ids(enc, "the red car")


# ---- batching -------------------------------------------------------------------------------------------
def test_padding_does_not_change_vectors(enc) -> None:
    short = {"text": "a cat", "image": _img(7)}
    longer = [
        "the dog is in the house and the car is red and blue and green " * 3,
        [_img(8), "the river at night", _img(9), "a tree"],
    ]
    alone = enc.encode_queries([short], instruction=INSTR)
    batch = enc.prepare([coerce(short)] + [coerce(x) for x in longer], instruction=INSTR, is_query=True)
    assert batch.attention_mask[0].sum() < batch.attention_mask.shape[1]  # the short item really is padded
    padded = enc.encode_queries([short, *longer], instruction=INSTR, batch_size=8)
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-5)
    # length-sorted batching returns vectors in input order: same as one item per batch
    singles = np.stack([enc.encode_queries([x], instruction=INSTR)[0] for x in [short, *longer]])
    np.testing.assert_allclose(enc.encode_queries([short, *longer], instruction=INSTR, batch_size=2), singles, atol=1e-5)


def test_attention_is_bidirectional(enc) -> None:
    batch = enc.prepare([coerce("the red car"), coerce("the red dog")], instruction=None, is_query=False)
    ids = batch.input_ids
    assert torch.equal(ids[0, :3], ids[1, :3]) and ids[0, 3] != ids[1, 3]  # differ only at "car"/"dog"
    with torch.inference_mode():
        h = enc.model.hidden_states(batch)
    # a causal model would give identical states before the differing token; ours does not
    assert (h[0, 1] - h[1, 1]).abs().max() > 1e-3
    assert (h[0, 0] - h[1, 0]).abs().max() > 1e-3


# ---- several images per item (extension) ----------------------------------------------------------------
def test_multi_image_items(enc) -> None:
    a, b = _img(10), _img(11)
    item = coerce([a, "the dog", b, "in the house"])
    batch = enc.prepare([item], instruction=INSTR, is_query=True)
    mask = batch.image_mask[0].int()
    assert int(mask.sum()) == 2 * tiny.IMAGE_TOKENS
    starts = ((mask[1:] - mask[:-1]) == 1).nonzero().flatten().tolist()
    assert len(starts) == 2  # two separate blocks, text between them
    assert batch.pixel_values.shape == (2, 3, tiny.VISION["image"], tiny.VISION["image"])
    torch.testing.assert_close(batch.pixel_values[0], enc.images([a])[0])  # in order of appearance
    assert _collapse(batch) == _hub_ids(enc, f"Instruct: {INSTR}\nQuery: <image>\nthe dog\n<image>\nin the house")
    vecs = enc.encode_documents([[a, "the dog", b, "in the house"], [b, "the dog", a, "in the house"],
                                 {"text": "the dog", "image": a}])
    assert np.abs(vecs[0] - vecs[1]).max() > 1e-3  # order of images matters
    assert np.abs(vecs[0] - vecs[2]).max() > 1e-3
    # a dict with several images places them first, like the single-image hub layout
    many = enc.prepare([coerce({"images": [a, b], "text": "two"})], instruction=None, is_query=False)
    assert _collapse(many) == _hub_ids(enc, "<image>\n<image>\ntwo")


# ---- truncation and odd text ------------------------------------------------------------------------------
def test_max_length_cuts_text_and_keeps_images(ckpt: Path) -> None:
    enc = mmembed.load_encoder(ckpt, max_length=12)
    item = coerce([_img(12), "the dog is in the house and the car is red and blue"])
    batch = enc.prepare([item], instruction=None, is_query=False)
    ids = _collapse(batch)
    assert len(ids) == 12 and ids[-1] == enc.tokenizer.eos_id and ids.count(enc.tokenizer.image_id) == 1
    assert ids == _hub_ids(enc, "<image>\nthe dog is in the house and the")  # 12 = BOS+1+1+8+EOS
    tail = coerce(["the dog is in the house and the car is red and blue", _img(13)])
    ids = _collapse(enc.prepare([tail], instruction=None, is_query=False))
    assert len(ids) == 12 and enc.tokenizer.image_id in ids  # the image at the end survives
    with pytest.raises(mmembed.InputError, match="instruction"):
        enc.encode_queries(["a cat"], instruction=INSTR)
    assert enc.encode_documents(["the dog " * 40]).shape == (1, enc.dim)


def test_image_marker_inside_text_stays_text(enc) -> None:
    batch = enc.prepare([coerce("a <image> tag")], instruction=None, is_query=False)
    assert not batch.image_mask.any() and batch.pixel_values is None
    assert enc.tokenizer.image_id not in batch.input_ids[0].tolist()
    assert enc.encode_documents(["a <image> tag", "a <pad> tag"]).shape == (2, enc.dim)


# ---- persistence -----------------------------------------------------------------------------------------
def test_save_load_round_trip(enc, tmp_path: Path) -> None:
    items = ["a red car", {"text": "the cat", "image": _img(14)}, [_img(15), "x", _img(16)]]
    before = enc.encode_documents(items), enc.encode_queries(items, instruction=INSTR)
    out = enc.save(tmp_path / "copy", max_shard_bytes=20_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tiny.published_shapes())  # published names written back
    assert len(set(index["weight_map"].values())) > 1  # sharded
    again = mmembed.load_encoder(out)
    assert again.name == enc.name
    after = again.encode_documents(items), again.encode_queries(items, instruction=INSTR)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])


def test_half_precision_path(ckpt: Path, enc) -> None:
    bf16 = mmembed.load_encoder(ckpt, dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert bf16.name == enc.name  # same weights, same space, whatever the compute dtype
    items = ["a red car", {"text": "the cat", "image": _img(17)}]
    cos = (bf16.encode_documents(items) * enc.encode_documents(items)).sum(1)
    assert (cos > 0.98).all()


# ---- errors ----------------------------------------------------------------------------------------------
def _variant(ckpt: Path, dst: Path, *, config=None, tensors=None) -> Path:
    cfg = json.loads((ckpt / "config.json").read_text()) if config is None else config
    return tiny.build_tiny_mmembed(dst, config=cfg, tensors=tensors)


def test_missing_and_unexpected_keys_are_named(ckpt: Path, tmp_path: Path) -> None:
    weights = tiny.random_weights()
    del weights["language_model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(ModelLoadError, match=r"1 missing .*language_model\.layers\.1\.mlp\.up_proj\.weight"):
        mmembed.load_encoder(_variant(ckpt, tmp_path / "missing", tensors=weights))
    weights = tiny.random_weights()
    weights["language_model.lm_head.weight"] = torch.zeros(3, 3)
    with pytest.raises(ModelLoadError, match=r"1 unexpected .*language_model\.lm_head\.weight"):
        mmembed.load_encoder(_variant(ckpt, tmp_path / "unexpected", tensors=weights))
    weights = tiny.random_weights()
    weights["vision_tower.vision_model.embeddings.position_ids"] = torch.arange(17)[None]  # old buffer: fine
    assert mmembed.load_encoder(_variant(ckpt, tmp_path / "buffer", tensors=weights)).dim == tiny.TEXT["hidden"]


def test_missing_shard_is_reported(ckpt: Path, tmp_path: Path) -> None:
    dst = tmp_path / "partial"
    shutil.copytree(ckpt, dst)
    (dst / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="model-00002-of-00003.safetensors.*missing"):
        mmembed.load_encoder(dst)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["text_config"].update(hidden_size=48), r"hidden_size is 48 .*embed_tokens"),
        (lambda c: c["text_config"].update(num_hidden_layers=3), r"missing .*language_model\.layers\.2\."),
        (lambda c: c["text_config"].update(intermediate_size=96), r"shapes that config\.json does not predict"),
        (lambda c: c["vision_config"].update(model_type="siglip_vision_model"), "clip_vision_model"),
        (lambda c: c.update(global_image_patch_only=False), "global-patch"),
        (lambda c: c.update(vision_feature_select_strategy="bogus"), "vision_feature_select_strategy"),
        (lambda c: c.update(image_token_index=5), "image_token_index 5"),
        (lambda c: c.pop("vision_config"), "'vision_config' is missing"),
        (lambda c: c.update(architectures=["LlavaNextForConditionalGeneration"]), "not an MM-Embed checkpoint"),
    ],
)
def test_wrong_config_is_refused_clearly(ckpt: Path, tmp_path: Path, edit, message) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    edit(cfg)
    dst = tmp_path / "bad"
    shutil.copytree(ckpt, dst)
    (dst / "config.json").write_text(json.dumps(cfg))
    from mmembed.encoders.mmembed_llava import load_mmembed

    with pytest.raises(ModelLoadError, match=message):
        load_mmembed(dst)


def test_unknown_option_is_refused(ckpt: Path) -> None:
    with pytest.raises(TypeError, match="max_lenght"):
        mmembed.load_encoder(ckpt, max_lenght=10)


# ---- the registry name resolves from the Hugging Face cache only ------------------------------------------
def test_registry_name_loads_from_hf_cache(ckpt: Path, tmp_path: Path, enc) -> None:
    cache = tmp_path / "hub"
    with pytest.raises(ModelLoadError, match=r"(?s)not in the Hugging Face cache.*hf download nvidia/MM-Embed"):
        mmembed.load_encoder("nvidia/MM-Embed", cache_dir=cache, local_files_only=True)
    repo = cache / "models--nvidia--MM-Embed"
    snap = repo / "snapshots" / ("0" * 40)
    shutil.copytree(ckpt, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    loaded = mmembed.load_encoder("nvidia/MM-Embed", cache_dir=cache, local_files_only=True)
    assert loaded.name == enc.name
    np.testing.assert_array_equal(loaded.encode_documents(["a cat"]), enc.encode_documents(["a cat"]))
    for f in snap.glob("*.safetensors*"):
        f.unlink()
    with pytest.raises(ModelLoadError, match="only partly"):
        mmembed.load_encoder("nvidia/MM-Embed", cache_dir=cache, local_files_only=True)


def test_errors_name_items_by_input_position_when_sorted(enc, tmp_path: Path) -> None:
    # length sorting puts the long document first; the broken image is still reported as document #2
    with pytest.raises(mmembed.ImageLoadError, match="document #2"):
        enc.encode_documents(["a", "the dog " * 30, tmp_path / "nope.png"], batch_size=1)


def test_language_model_settings_come_from_the_named_retriever(ckpt: Path, tmp_path: Path) -> None:
    from mmembed.encoders.mmembed_llava import load_mmembed

    cfg = json.loads((ckpt / "config.json").read_text())
    for key in ("rms_norm_eps", "rope_theta"):
        del cfg["text_config"][key]  # MistralConfig's own defaults would be 1e-6 and 10000
    dst = tmp_path / "bare"
    shutil.copytree(ckpt, dst)
    (dst / "config.json").write_text(json.dumps(cfg))
    text = load_mmembed(dst).model.spec.text
    assert text.rms_norm_eps == 1e-5 and text.rope_parameters["rope_theta"] == 10000.0
    cfg = json.loads((ckpt / "config.json").read_text())
    del cfg["retriever"]  # no known retriever: text_config is taken as written
    (dst / "config.json").write_text(json.dumps(cfg))
    assert load_mmembed(dst).model.spec.text.rope_parameters["rope_theta"] == 1e6
