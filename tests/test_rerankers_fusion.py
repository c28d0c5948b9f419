"""The offline default reranker: dense + second text model + BM25 fusion (real bm25s, real MiniLM, real mini)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmembed import coerce, load_reranker
from mmembed.pipeline import rerank
from mmembed.errors import InputError
from mmembed.rerankers.fusion import (ALL_VIEWS, DEFAULT_WEIGHTS, VIEWS, FusionReranker, TextTowerEncoder,
                                      bm25_scores, minmax)

from conftest import ToyEncoder

DOCS = [
    "How do I copy a list in Python? Use slicing or list.copy().",
    "Lists can be copied with copy.deepcopy for nested lists.",
    "The GIL limits threads running Python bytecode at once.",
    "Tuples are immutable sequences; lists are mutable.",
    "Use the json module to read and write JSON files.",
]


@pytest.fixture(scope="module")
def minilm() -> TextTowerEncoder:
    return TextTowerEncoder("minilm", device="cpu")


def _dense(enc: ToyEncoder, query: object, docs: list[object]) -> np.ndarray:
    return enc.encode_documents(docs) @ enc.encode_queries([query])[0]


def _bm25_reference(query: str, docs: list[str]) -> np.ndarray:
    import bm25s
    import Stemmer

    stem = Stemmer.Stemmer("english").stemWords
    corpus = bm25s.tokenize(docs, stopwords="en", stemmer=stem, show_progress=False, return_ids=False)
    ref = bm25s.BM25()
    ref.index(corpus, show_progress=False)
    q = bm25s.tokenize([query], stopwords="en", stemmer=stem, show_progress=False, return_ids=False)[0]
    return np.asarray(ref.get_scores(list(q)))


@pytest.mark.parametrize("w", [0.0, 0.4, 1.0])
def test_dense_and_bm25_are_minmax_fused(toy_encoder: ToyEncoder, w: float) -> None:
    rr = FusionReranker(toy_encoder, second=None, weights={"dense": 1.0 - w if w < 1 else 1e-9, "lexical": w})
    query = "how to copy a nested list"
    got = np.asarray(rr.score(query, DOCS))
    wd = rr.weights["dense"]
    expected = (wd * minmax(_dense(toy_encoder, query, DOCS)) + w * minmax(_bm25_reference(query, DOCS))) / (wd + w)
    assert got == pytest.approx(expected, abs=1e-6)
    assert got.min() >= 0.0 and got.max() <= 1.0
    if w == 1.0:  # BM25 alone: texts without the query's (stemmed) words score 0
        assert got[[2, 4]] == pytest.approx([0.0, 0.0], abs=1e-6) and got[1] == pytest.approx(1.0)
    assert [r.index for r in rerank(rr, query, DOCS)] == sorted(range(len(DOCS)), key=lambda i: -expected[i])


def test_second_opinion_is_minilm_cosine_on_text(toy_encoder: ToyEncoder, minilm: TextTowerEncoder) -> None:
    from sentence_transformers import SentenceTransformer

    rr = FusionReranker(toy_encoder, second=minilm, weights={"lexical": 0.0})
    query = "How can I duplicate a list?"
    img = Image.new("RGB", (16, 16), "red")
    cands = [coerce(d) for d in DOCS[:3]] + [coerce({"image": img}).load_images(),
                                              coerce({"image": img, "text": DOCS[3]}).load_images()]
    second = rr.second_scores(coerce(query), cands, None)
    st: SentenceTransformer = minilm.tower._load()
    ref = st.encode([query] + DOCS[:4], normalize_embeddings=True)
    expected = ref[1:] @ ref[0]
    assert np.isnan(second[3])  # an image-only candidate has nothing for a text model to read
    assert second[[0, 1, 2, 4]] == pytest.approx(expected[[0, 1, 2, 3]], abs=1e-5)
    assert int(np.nanargmax(second)) == 0  # MiniLM knows that duplicating is copying
    # fusion: where the second signal does not apply, the dense score stands in
    dense = minmax(_dense(toy_encoder, query, cands))
    sig = dense.copy()
    ok = ~np.isnan(second)
    sig[ok] = minmax(second[ok])
    w = DEFAULT_WEIGHTS
    expected_fused = (w["dense"] * dense + w["second"] * sig) / (w["dense"] + w["second"])
    assert rr.score(query, cands) == pytest.approx(expected_fused.tolist(), abs=1e-6)


def test_image_only_sets_and_image_queries_keep_the_dense_order(toy_encoder: ToyEncoder,
                                                                minilm: TextTowerEncoder) -> None:
    rr = FusionReranker(toy_encoder, second=minilm)
    cands = [{"image": Image.new("RGB", (16, 16), c)} for c in ("red", "blue", "green")]
    assert rr.score("red", cands) == pytest.approx(minmax(_dense(toy_encoder, "red", cands)).tolist(), abs=1e-6)
    q = {"image": Image.new("RGB", (16, 16), (230, 10, 10))}
    texts = ["red", "blue", "green"]
    assert rr.score(q, texts) == pytest.approx(minmax(_dense(toy_encoder, q, texts)).tolist(), abs=1e-6)


def test_bm25_helper_edge_cases() -> None:
    assert bm25_scores("", ["a b"]).tolist() == [0.0]
    assert bm25_scores("the of", ["the cat", ""]).tolist() == [0.0, 0.0]  # only stopwords
    s = bm25_scores("cats", ["a cat", "", "a dog"])
    assert s[0] > 0 and s[1] == 0 and s[2] == 0
    assert minmax(np.array([2.0, 2.0])).tolist() == [0.0, 0.0]


def _half_red(size: tuple[int, int] = (40, 40)) -> Image.Image:
    img = Image.new("RGB", size, (255, 255, 255))
    img.paste((220, 20, 20), (0, 0, size[0] // 2, size[1]))
    return img


def test_image_views_are_averaged_when_enabled(toy_encoder: ToyEncoder) -> None:
    rr = FusionReranker(toy_encoder, second=None, views=ALL_VIEWS)
    img = _half_red()
    views = [img] + [VIEWS[v](img) for v in ALL_VIEWS]
    assert views[1].getpixel((39, 0)) == (220, 20, 20) and views[2].size == (35, 35) and views[3].size == (46, 46)
    vecs = toy_encoder.encode_documents([{"image": v} for v in views])
    mean = vecs.mean(0) / np.linalg.norm(vecs.mean(0))
    cand = coerce({"image": img}).load_images()
    assert rr._candidate_vectors(toy_encoder, "dense", [cand])[0] == pytest.approx(mean, abs=1e-6)
    q = coerce({"image": Image.new("RGB", (30, 30), (200, 40, 40))}).load_images()
    qv = rr._query_vector(toy_encoder, q, None)
    assert rr.dense_scores(q, [cand], None)[0] == pytest.approx(float(qv @ mean), abs=1e-6)


def test_candidate_embeddings_are_cached(toy_encoder: ToyEncoder) -> None:
    rr = FusionReranker(toy_encoder, second=None, views=ALL_VIEWS)
    cands = [{"image": _half_red()}, "a red square", {"image": Image.new("RGB", (20, 20), "blue"), "text": "blue"}]
    first = rr.score("red", cands)
    toy_encoder.calls.clear()
    assert rr.score("red", cands) == pytest.approx(first)
    assert toy_encoder.calls == [1]  # only the (text, so view-less) query; candidates come from the cache
    toy_encoder.calls.clear()
    rr.score("red", cands + ["a new text"])
    assert toy_encoder.calls == [1, 1]  # the query, then the one new candidate


def test_first_stage_scores_replace_text_embeddings(toy_encoder: ToyEncoder) -> None:
    rr = FusionReranker(toy_encoder, second=None, weights={"lexical": 0.0})
    docs = ["alpha", "beta", "gamma"]
    toy_encoder.calls.clear()
    scores = rr.score("alpha", docs, first_stage=[0.1, 0.9, 0.5])
    assert toy_encoder.calls == []  # nothing embedded at all
    assert scores == pytest.approx([0.0, 1.0, 0.5])
    with pytest.raises(InputError, match="2 first-stage scores for 3"):
        rr.score("alpha", docs, first_stage=[0.1, 0.2])


def test_bad_settings(toy_encoder: ToyEncoder) -> None:
    with pytest.raises(ValueError, match="unknown signal"):
        FusionReranker(toy_encoder, second=None, weights={"colour": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        FusionReranker(toy_encoder, second=None, weights={"lexical": -1.0})
    with pytest.raises(ValueError, match="dense weight"):
        FusionReranker(toy_encoder, second=None, weights={"dense": 0.0})
    with pytest.raises(ValueError, match="unknown views"):
        FusionReranker(toy_encoder, second=None, views=("rotate",))


def test_default_reranker_with_the_real_default_encoder(tmp_path: Path) -> None:
    """``load_reranker("default")`` runs on what ships: mmembed-mini, its MiniLM-space twin and bm25s."""
    from mmembed.encoders.mini import MiniEncoder

    rr = load_reranker("default", device="cpu")
    assert isinstance(rr, FusionReranker) and isinstance(rr.encoder, MiniEncoder)
    assert isinstance(rr.second, MiniEncoder) and rr.second.model.text_tower.kind == "minilm"
    img = tmp_path / "apple.png"
    Image.new("RGB", (48, 48), (210, 30, 30)).save(img)
    cands = ["Use threads with care.", "How do I copy a list? Use list.copy().", {"image": img, "text": "a red apple"}]
    scores = rr.score("How can I duplicate a list?", cands, task="question->passage")
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert int(np.argmax(scores)) == 1
    # an image-only set: the second image tower gives an opinion (NaN would mean it was skipped)
    imgs = [coerce({"image": Image.new("RGB", (40, 40), c)}).load_images() for c in ("red", "green", "blue")]
    assert not np.isnan(rr.second_scores(coerce("a red circle"), imgs, None)).any()


def test_default_reranker_over_another_encoder_reads_text_only(toy_encoder: ToyEncoder) -> None:
    rr = load_reranker("default", encoder=toy_encoder, device="cpu")
    assert rr.encoder is toy_encoder and isinstance(rr.second, TextTowerEncoder)
