"""The offline default reranker: multi-view dense scores fused with BM25 (real bm25s, real encoders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmembed import coerce, load_reranker
from mmembed.errors import InputError
from mmembed.rerankers.fusion import VIEWS, FusionReranker, bm25_scores, minmax

from conftest import ToyEncoder

DOCS = [
    "How do I copy a list in Python? Use slicing or list.copy().",
    "Lists can be copied with copy.deepcopy for nested lists.",
    "The GIL limits threads running Python bytecode at once.",
    "Tuples are immutable sequences; lists are mutable.",
    "Use the json module to read and write JSON files.",
]


def _dense(enc: ToyEncoder, query: object, docs: list[object]) -> np.ndarray:
    return enc.encode_documents(docs) @ enc.encode_queries([query])[0]


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_fused_score_is_minmax_mix_of_dense_and_bm25(toy_encoder: ToyEncoder, w: float) -> None:
    rr = FusionReranker(toy_encoder, lexical_weight=w, views=())
    query = "how to copy a nested list"
    got = np.asarray(rr.score(query, DOCS))
    import bm25s

    corpus = bm25s.tokenize(DOCS, stopwords="en", show_progress=False, return_ids=False)
    ref = bm25s.BM25()
    ref.index(corpus, show_progress=False)
    lexical = ref.get_scores(list(bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]))
    expected = (1 - w) * minmax(_dense(toy_encoder, query, DOCS)) + w * minmax(lexical)
    assert got == pytest.approx(expected, abs=1e-6)
    assert got.min() >= 0.0 and got.max() <= 1.0
    if w == 1.0:  # BM25 alone: the two texts with the query's words, nothing else
        assert got[[2, 4]].tolist() == [0.0, 0.0] and got[0] == 1.0
    assert [r.index for r in rr.rerank(query, DOCS)] == sorted(range(len(DOCS)), key=lambda i: -expected[i])


def test_bm25_helper_edge_cases() -> None:
    assert bm25_scores("", ["a b"]).tolist() == [0.0]
    assert bm25_scores("the of", ["the cat", ""]).tolist() == [0.0, 0.0]  # only stopwords
    s = bm25_scores("cat", ["a cat", "", "a dog"])
    assert s[0] > 0 and s[1] == 0 and s[2] == 0
    assert minmax(np.array([2.0, 2.0])).tolist() == [0.0, 0.0]


def _half_red(size: tuple[int, int] = (40, 40)) -> Image.Image:
    img = Image.new("RGB", size, (255, 255, 255))
    img.paste((220, 20, 20), (0, 0, size[0] // 2, size[1]))
    return img


def test_image_candidates_use_the_mean_of_their_views(toy_encoder: ToyEncoder) -> None:
    rr = FusionReranker(toy_encoder, views=("mirror", "zoom_in", "zoom_out"))
    img = _half_red()
    views = [img] + [VIEWS[v](img) for v in ("mirror", "zoom_in", "zoom_out")]
    assert views[1].getpixel((39, 0)) == (220, 20, 20) and views[2].size == (35, 35) and views[3].size == (46, 46)
    vecs = toy_encoder.encode_documents([{"image": v} for v in views])
    mean = vecs.mean(0) / np.linalg.norm(vecs.mean(0))
    cand = coerce({"image": img}).load_images()
    got = rr._candidate_vectors([cand])[0]
    assert got == pytest.approx(mean, abs=1e-6)
    # an image query gets its views as well; the dense score is the cosine of the two means
    q = coerce({"image": Image.new("RGB", (30, 30), (200, 40, 40))}).load_images()
    assert rr.dense_scores(q, [cand], None)[0] == pytest.approx(float(rr._query_vector(q, None) @ mean), abs=1e-6)


def test_candidate_embeddings_are_cached(toy_encoder: ToyEncoder) -> None:
    rr = FusionReranker(toy_encoder)
    cands = [{"image": _half_red()}, "a red square", {"image": Image.new("RGB", (20, 20), "blue"), "text": "blue"}]
    first = rr.score("red", cands)
    toy_encoder.calls.clear()
    assert rr.score("red", cands) == pytest.approx(first)
    assert toy_encoder.calls == [1]  # only the (text, so view-less) query; candidates come from the cache
    toy_encoder.calls.clear()
    rr.score("red", cands + ["a new text"])
    assert toy_encoder.calls == [1, 1]  # the query, then the one new candidate


def test_first_stage_scores_replace_text_embeddings(toy_encoder: ToyEncoder) -> None:
    rr = FusionReranker(toy_encoder, lexical_weight=0.0, views=())
    docs = ["alpha", "beta", "gamma"]
    toy_encoder.calls.clear()
    scores = rr.score("alpha", docs, first_stage=[0.1, 0.9, 0.5])
    assert toy_encoder.calls == []  # nothing embedded at all
    assert scores == pytest.approx([0.0, 1.0, 0.5])
    with pytest.raises(InputError, match="2 first-stage scores for 3"):
        rr.score("alpha", docs, first_stage=[0.1, 0.2])


def test_image_only_sets_ignore_bm25(toy_encoder: ToyEncoder) -> None:
    rr = FusionReranker(toy_encoder, lexical_weight=0.9, views=())
    cands = [{"image": Image.new("RGB", (16, 16), c)} for c in ("red", "blue", "green")]
    q = "red"
    expected = minmax(_dense(toy_encoder, q, cands))
    assert rr.score(q, cands) == pytest.approx(expected.tolist(), abs=1e-6)


def test_bad_settings(toy_encoder: ToyEncoder) -> None:
    with pytest.raises(ValueError, match="lexical_weight"):
        FusionReranker(toy_encoder, lexical_weight=1.5)
    with pytest.raises(ValueError, match="unknown views"):
        FusionReranker(toy_encoder, views=("rotate",))


def test_default_reranker_with_the_real_default_encoder(tmp_path: Path) -> None:
    """``load_reranker("default")`` runs on what ships: the bundled mmembed-mini and bm25s."""
    rr = load_reranker("default", device="cpu")
    assert isinstance(rr, FusionReranker)
    img = tmp_path / "apple.png"
    Image.new("RGB", (48, 48), (210, 30, 30)).save(img)
    cands = ["How do I copy a list?", "Use threads with care.", {"image": img, "text": "a red apple"}]
    scores = rr.score("copy a list", cands, task="question->passage")
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert int(np.argmax(scores)) == 0
