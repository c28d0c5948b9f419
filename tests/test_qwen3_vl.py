"""Qwen3-VL-Embedding and Qwen3-VL-Reranker on tiny random checkpoints in the hub layout (tests/tiny_qwen3vl.py).

Everything goes through ``mmembed.load_encoder`` / ``load_reranker`` as a user would. References are computed
here from transformers' own modules and the model card's formats written out by hand, so a backend that
builds the wrong prompt, pools the wrong token or scores the wrong logits fails. The equality with the
sentence-transformers path (which needs torchvision) is in tests/test_qwen3_vl_st_equivalence.py.
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

import tiny_qwen3vl as tiny  # noqa: E402

import mmembed  # noqa: E402
from mmembed import ModelLoadError, coerce  # noqa: E402
from mmembed.encoders import detect_backend  # noqa: E402
from mmembed.rerankers.registry import detect_backend as detect_reranker  # noqa: E402

INSTR = "Find an image that matches the caption"


def img(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def emb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("Qwen3-VL-Embedding-tiny"), kind="embedding")


@pytest.fixture(scope="module")
def rr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("Qwen3-VL-Reranker-tiny"), kind="reranker", seed=1)


@pytest.fixture(scope="module")
def enc(emb_dir: Path):
    return mmembed.load_encoder(emb_dir)


@pytest.fixture(scope="module")
def rr(rr_dir: Path):
    return mmembed.load_reranker(rr_dir)


# ---- which backend --------------------------------------------------------------------------------------
def test_config_json_wins_over_modules_json(emb_dir: Path, rr_dir: Path, tmp_path: Path, enc, rr) -> None:
    assert (emb_dir / "modules.json").is_file() and (emb_dir / "config.json").is_file()
    assert detect_backend(emb_dir) == "qwen3-vl" and type(enc).__name__ == "Qwen3VLEncoder"
    assert detect_reranker(rr_dir) == "qwen3-vl" and type(rr).__name__ == "Qwen3VLReranker"
    # a Qwen3-VL chat model without the reranker's CrossEncoder config is a generic MLLM for reranking
    plain = shutil.copytree(rr_dir, tmp_path / "chat")
    (plain / "config_sentence_transformers.json").unlink()
    assert detect_reranker(plain) == "mllm"


# ---- embedding ------------------------------------------------------------------------------------------
def _reference(emb_dir: Path, prompt: str, images: list[Image.Image]) -> np.ndarray:
    """The card's recipe by hand: Qwen resize, image pads expanded, Qwen3VLModel, last token, L2."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = AutoTokenizer.from_pretrained(emb_dir)
    model = AutoModel.from_pretrained(emb_dir).eval()
    kwargs = {}
    if images:
        ip = Qwen2VLImageProcessorPil.from_pretrained(emb_dir)(images, size={"shortest_edge": 4 * 32 * 32,
                                                                             "longest_edge": 1800 * 32 * 32},
                                                               return_tensors="pt")
        for n in (ip["image_grid_thw"].prod(-1) // 4).tolist():
            prompt = prompt.replace("<|image_pad|>", "<|placeholder|>" * n, 1)
        prompt = prompt.replace("<|placeholder|>", "<|image_pad|>")
        kwargs = {"pixel_values": ip["pixel_values"], "image_grid_thw": ip["image_grid_thw"]}
    ids = torch.tensor([tok.encode(prompt, add_special_tokens=False)])
    kwargs["mm_token_type_ids"] = (ids == tiny.IDS["<|image_pad|>"]).long()
    with torch.inference_mode():
        h = model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs).last_hidden_state[0, -1]
    v = h.numpy()
    return v / np.linalg.norm(v)


def test_prompt_follows_the_model_card(enc) -> None:
    q = enc.prompt(coerce({"image": img(0), "text": "a red car"}), INSTR)
    assert q == ("<|im_start|>system\nFind an image that matches the caption.<|im_end|>\n"
                 "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>a red car<|im_end|>\n"
                 "<|im_start|>assistant\n")
    d = enc.prompt(coerce(["before", img(1), "after"]), None)
    assert d == ("<|im_start|>system\nRepresent the user's input.<|im_end|>\n<|im_start|>user\nbefore"
                 "<|vision_start|><|image_pad|><|vision_end|>after<|im_end|>\n<|im_start|>assistant\n")
    assert "Ends already!" in enc.prompt(coerce("x"), "Ends already!")  # no second full stop
    assert "< |image_pad|>" in enc.prompt(coerce("a <|image_pad|> literal"), None)  # user text stays text


def test_vectors_equal_the_card_recipe(enc, emb_dir: Path) -> None:
    items = ["a red car", {"image": img(2), "text": "the cat"}, img(3, (200, 40))]
    got = enc.encode_queries(items, instruction=INSTR, batch_size=3)
    for row, item in zip(got, items):
        c = coerce(item)
        ref = _reference(emb_dir, enc.prompt(c, INSTR), [p.image for p in c.images])
        np.testing.assert_allclose(row, ref, atol=2e-5)
    # documents use the default instruction, so they differ from instructed queries
    docs = enc.encode_documents(items)
    assert np.abs(docs - got).max() > 1e-3
    np.testing.assert_allclose(enc.encode_queries(items), docs, atol=1e-6)  # no instruction = default one


def test_batching_and_padding_do_not_change_vectors(enc) -> None:
    items = ["a", {"image": img(4), "text": "a long text " * 20}, [img(5), "x", img(6)], img(7, (40, 300))]
    batched = enc.encode_documents(items, batch_size=4)
    single = np.stack([enc.encode_documents([it])[0] for it in items])
    np.testing.assert_allclose(batched, single, atol=2e-5)


def test_image_resolution_limits(emb_dir: Path) -> None:
    small = mmembed.load_encoder(emb_dir, max_pixels=64 * 64)
    batch = small.processor(text=[small.prompt(coerce(img(8, (640, 480))), None)], images=[img(8, (640, 480))])
    h, w = batch["image_grid_thw"][0, 1:].tolist()
    assert h * w * 16 * 16 <= 64 * 64 and h % 2 == 0 and w % 2 == 0
    assert int((batch["input_ids"] == tiny.IDS["<|image_pad|>"]).sum()) == h * w // 4


def test_matryoshka_dims(emb_dir: Path, enc) -> None:
    short = mmembed.load_encoder(emb_dir, dim=64)
    assert short.dim == 64 and short.name == enc.name + ":dim64"
    full = enc.encode_documents(["a red car", img(9)])
    cut = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(short.encode_documents(["a red car", img(9)]), cut, atol=1e-5)
    for bad in (32, 129, "64"):
        with pytest.raises(ModelLoadError, match=r"Matryoshka dims from 64 to 128|must be an integer"):
            mmembed.load_encoder(emb_dir, dim=bad)


def test_truncation_keeps_images_and_the_template_tail(emb_dir: Path) -> None:
    short = mmembed.load_encoder(emb_dir, max_length=60, max_pixels=64 * 64)
    prompt = short.prompt(coerce({"image": img(10), "text": "word " * 200}), None)
    ids = short.processor(text=[prompt], images=[img(10)])["input_ids"][0].tolist()
    assert len(ids) == 60 and tiny.IDS["<|image_pad|>"] in ids
    tail = short.processor.tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    assert ids[-len(tail):] == tail
    assert short.encode_documents([{"image": img(10), "text": "word " * 200}]).shape == (1, 128)


# ---- reranker -------------------------------------------------------------------------------------------
def test_reranker_prompt_and_scores(rr, rr_dir: Path) -> None:
    q, c = coerce("a red car"), coerce({"image": img(11), "text": "a car"})
    prompt, images = rr.build_prompt(q, c, INSTR)
    assert prompt == (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
        "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n"
        f"<Instruct>: {INSTR}<Query>:a red car\n<Document>:<|vision_start|><|image_pad|><|vision_end|>a car"
        "<|im_end|>\n<|im_start|>assistant\n")
    assert len(images) == 1
    # reference: the card's head, a linear layer of (w_yes - w_no) on the last hidden state, then sigmoid
    from transformers import AutoModelForImageTextToText

    lm = AutoModelForImageTextToText.from_pretrained(rr_dir).eval()
    batch = rr.processor(text=[prompt], images=images)
    with torch.inference_mode():
        w = lm.lm_head.weight[tiny.IDS["yes"]] - lm.lm_head.weight[tiny.IDS["no"]]
        h = lm.model(**batch).last_hidden_state[0, -1]
        expected = torch.sigmoid(h @ w).item()
    assert rr.score("a red car", [{"image": img(11), "text": "a car"}], instruction=INSTR)[0] == pytest.approx(
        expected, abs=1e-5)


def test_reranker_batches_equal_single_pairs_and_use_the_instruction(rr) -> None:
    cands = ["a red car", {"image": img(12), "text": "a dog"}, img(13, (50, 200)), "the sea " * 30]
    batched = rr.score("a red car", cands, batch_size=4)
    single = [rr.score("a red car", [c], batch_size=1)[0] for c in cands]
    np.testing.assert_allclose(batched, single, atol=2e-5)
    other = rr.score("a red car", cands, instruction="Retrieve passages that answer the question")
    assert np.abs(np.array(other) - np.array(batched)).max() > 1e-4
    assert len(set(np.round(batched, 5))) == len(cands)  # the scores separate the candidates


# ---- through the product: store, retrieve, LangChain, LlamaIndex -------------------------------------------
def test_store_retrieve_and_adapters(enc, rr, emb_dir: Path, tmp_path: Path) -> None:
    for i in (14, 15):
        img(i).save(tmp_path / f"{i}.png")
    docs = ["a red car", {"image": tmp_path / "14.png", "text": "a cat"}, tmp_path / "15.png", "the blue sea"]
    store = mmembed.Store(tmp_path / "db", encoder=enc, collection="qwen")
    store.add(docs, ids=["car", "cat", "pic", "sea"])
    hits = mmembed.retrieve(store, "a red car", k=2, reranker=rr, fetch_k=4)
    assert len(hits) == 2 and all(h.rerank_score is not None for h in hits)
    expected = rr.score("a red car", [docs[["car", "cat", "pic", "sea"].index(h.id)] for h in hits])
    np.testing.assert_allclose([h.rerank_score for h in hits], expected, atol=1e-5)
    assert store.query("a red car", k=1)[0].id == "car"  # the same text embeds to the same vector

    from langchain_mmembed import MMEmbedEmbeddings, MMEmbedRetriever

    lc = MMEmbedEmbeddings(encoder=enc)
    np.testing.assert_allclose(lc.embed_documents(["a red car"])[0], enc.encode_documents(["a red car"])[0],
                               atol=1e-6)
    assert MMEmbedRetriever(store=store).invoke("a red car")[0].id == "car"

    from llama_index.embeddings.mmembed import MMEmbedEmbedding
    from llama_index.postprocessor.mmembed_rerank import MMEmbedRerank
    from llama_index.retrievers.mmembed import MMEmbedRetriever as LIRetriever

    li = MMEmbedEmbedding(encoder=enc)
    np.testing.assert_allclose(li.get_text_embedding("a red car"), enc.encode_documents(["a red car"])[0],
                               atol=1e-6)
    nodes = LIRetriever(store, similarity_top_k=4).retrieve("a red car")
    assert nodes[0].node.node_id == "car" and len(nodes) == 4
    ranked = MMEmbedRerank(reranker=rr, top_n=2).postprocess_nodes(nodes, query_str="a red car")
    assert len(ranked) == 2 and ranked[0].score >= ranked[1].score


def test_collection_remembers_the_matryoshka_dim(enc, emb_dir: Path, tmp_path: Path) -> None:
    short = mmembed.load_encoder(emb_dir, dim=64)
    store = mmembed.Store(tmp_path / "db", encoder=short, collection="dim64")
    store.add(["a red car", "a cat"])
    meta = json.dumps(store.collection.metadata)
    assert ":dim64" in meta and "64" in meta
    with pytest.raises(mmembed.EncoderMismatchError, match="dim64|64"):
        mmembed.Store(tmp_path / "db", encoder=enc, collection="dim64").query("a red car", k=1)


def test_reranker_hub_name_downloads_and_uses_the_qwen_backend(rr_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch, rr) -> None:
    """The registered name works even for a copy without the sentence-transformers files."""
    from fake_hub import FakeHub

    bare = shutil.copytree(rr_dir, tmp_path / "bare")
    for f in ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json"):
        (bare / f).unlink()
    shutil.rmtree(bare / "1_LogitScore")
    with FakeHub() as hub:
        hub.add("Qwen/Qwen3-VL-Reranker-2B", bare)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        got = mmembed.load_reranker("Qwen/Qwen3-VL-Reranker-2B", cache_dir=tmp_path / "cache")
    assert type(got).__name__ == "Qwen3VLReranker"
    cands = ["a red car", {"image": img(16), "text": "a dog"}]
    np.testing.assert_allclose(got.score("a car", cands), rr.score("a car", cands), atol=1e-6)
