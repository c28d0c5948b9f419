"""The native Qwen3-VL backends equal the other paths on the same tiny random weights (to float rounding).

* embedding: mmembed's native backend vs **sentence-transformers** loading the same directory
  (``SentenceTransformer(dir).encode_query(messages, prompt=instruction)``: transformer + last-token
  pooling + normalize, through transformers' full ``Qwen3VLProcessor``);
* reranker: mmembed's native backend vs the model card's recipe run with the full ``Qwen3VLProcessor`` and
  ``Qwen3VLForConditionalGeneration`` (yes/no head from the output embedding rows, sigmoid).

Both need torchvision (``Qwen3VLProcessor`` builds a video processor), so they run in CI's second leg
(scripts/test_torchvision_leg.sh, which sets MMEMBED_TORCHVISION_LEG=1: there a missing torchvision fails
the run instead of skipping). Negative controls show each comparison can fail.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

import tiny_qwen3vl as tiny  # noqa: E402

if importlib.util.find_spec("torchvision") is None:
    if os.environ.get("MMEMBED_TORCHVISION_LEG") == "1":
        raise RuntimeError("the torchvision CI leg must have torchvision installed")
    pytest.skip("needs torchvision (Qwen3VLProcessor); runs in scripts/test_torchvision_leg.sh",
                allow_module_level=True)

import mmembed  # noqa: E402
from mmembed import coerce  # noqa: E402
from mmembed.inputs import ImagePart  # noqa: E402

INSTR = "Find an image that matches the caption."  # ends in punctuation: both paths pass it as written


def img(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    # sides are multiples of 32 inside the pixel limits: both paths keep the size, so no resampler differs
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


ITEMS = ["a red car", img(0), {"image": img(1), "text": "a cat on a mat"}, ["before", img(2, (64, 128)), "after"]]


def _messages(item) -> list[dict]:
    c = coerce(item)
    content = [{"type": "image", "image": p.image} if isinstance(p, ImagePart) else {"type": "text", "text": p.text}
               for p in c.parts]
    return [{"role": "user", "content": content}]


@pytest.fixture(scope="module")
def emb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("qwen3-vl-emb"), kind="embedding")


@pytest.fixture(scope="module")
def rr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("qwen3-vl-rr"), kind="reranker", seed=1)


def test_embedding_native_equals_sentence_transformers(emb_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    native = mmembed.load_encoder(emb_dir)
    assert type(native).__name__ == "Qwen3VLEncoder"
    st = SentenceTransformer(str(emb_dir), device="cpu")
    inputs = [_messages(x) for x in ITEMS]
    st_q = st.encode_query(inputs, prompt=INSTR, convert_to_numpy=True, normalize_embeddings=False)
    st_d = st.encode_document(inputs, convert_to_numpy=True, normalize_embeddings=False)
    nq = native.encode_queries(ITEMS, instruction=INSTR)
    nd = native.encode_documents(ITEMS)
    np.testing.assert_allclose(nq, st_q, atol=2e-5)
    np.testing.assert_allclose(nd, st_d, atol=2e-5)
    # Matryoshka: sentence-transformers' truncate_dim, re-normalised, equals dim=64
    st64 = st.encode_document(inputs, truncate_dim=64, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(mmembed.load_encoder(emb_dir, dim=64).encode_documents(ITEMS), st64, atol=2e-5)
    # mmembed's sentence-transformers backend on the same directory gives the same vectors too
    from mmembed.encoders.sentence_transformers import load_sentence_transformer

    via_st = load_sentence_transformer(emb_dir)
    np.testing.assert_allclose(via_st.encode_queries(ITEMS, instruction=INSTR), nq, atol=2e-5)
    # negative controls: another instruction, other weights -> the comparison fails
    other = st.encode_query(inputs, prompt="Retrieve a passage.", convert_to_numpy=True)
    assert np.abs(nq - other / np.linalg.norm(other, axis=1, keepdims=True)).max() > 1e-3
    seed1 = tiny.build(tmp_path / "seed1", kind="embedding", seed=1)
    assert np.abs(mmembed.load_encoder(seed1).encode_documents(ITEMS) - nd).max() > 1e-3


def _card_reranker_scores(rr_dir: Path, query, docs, instruction: str) -> list[float]:
    """The model card's recipe with transformers' full processor: one pair at a time, left padding."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mmembed.rerankers.qwen3_vl import SYSTEM

    proc = AutoProcessor.from_pretrained(rr_dir, padding_side="left")
    lm = AutoModelForImageTextToText.from_pretrained(rr_dir).eval()
    out = []
    for doc in docs:
        q, d = _messages(query)[0]["content"], _messages(doc)[0]["content"]
        msgs = [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
                {"role": "user", "content": [{"type": "text", "text": "<Instruct>: " + instruction},
                                             {"type": "text", "text": "<Query>:"}, *q,
                                             {"type": "text", "text": "\n<Document>:"}, *d]}]
        text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        images = [c["image"] for c in q + d if c["type"] == "image"] or None
        batch = proc(text=[text], images=images, return_tensors="pt", padding=True)
        with torch.inference_mode():
            h = lm.model(**batch).last_hidden_state[0, -1]
            w = lm.lm_head.weight[tiny.IDS["yes"]] - lm.lm_head.weight[tiny.IDS["no"]]
            out.append(torch.sigmoid(h @ w).item())
    return out


def test_reranker_native_equals_the_card_recipe(rr_dir: Path) -> None:
    rr = mmembed.load_reranker(rr_dir)
    assert type(rr).__name__ == "Qwen3VLReranker"
    docs = ITEMS[1:] + ["the blue sea"]
    query = {"image": img(5), "text": "a red car"}
    ref = _card_reranker_scores(rr_dir, query, docs, INSTR)
    got = rr.score(query, docs, instruction=INSTR, batch_size=len(docs))
    np.testing.assert_allclose(got, ref, atol=2e-5)
    other = _card_reranker_scores(rr_dir, query, docs, "Retrieve a passage.")  # negative control
    assert np.abs(np.array(other) - np.array(got)).max() > 1e-4
