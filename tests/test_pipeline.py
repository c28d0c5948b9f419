"""retrieve -> rerank through a real Chroma store (ToyEncoder) with real rerankers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmembed import ImageLoadError, InputError, Pipeline, Store, retrieve
from mmembed.inputs import Interleaved
from mmembed.pipeline import default_fetch_k
from mmembed.rerankers.base import Reranker
from mmembed.rerankers.fusion import FusionReranker

from conftest import ToyEncoder, make_png

FRUITS = ["a yellow banana", "a red apple", "a green pear", "an orange orange", "purple grapes", "a red cherry",
          "a green lime", "a yellow lemon", "a brown coconut", "a pink peach"]
OTHER = [f"note number {i} about the weather" for i in range(20)]


class WordReranker(Reranker):
    """A small real reranker: 1 for candidates whose text contains ``word``, else 0; records what it saw."""

    name = "word"

    def __init__(self, word: str) -> None:
        self.word = word
        self.seen: list[int] = []

    def _score_batch(self, query: Interleaved, candidates: Sequence[Interleaved], *,
                     instruction: str | None) -> list[float]:
        self.seen.append(len(candidates))
        return [1.0 if self.word in c.text else 0.0 for c in candidates]


@pytest.fixture
def store(tmp_path: Path, toy_encoder: ToyEncoder) -> Store:
    s = Store(tmp_path / "db", encoder=toy_encoder)
    s.add(FRUITS + OTHER, ids=[f"f{i}" for i in range(len(FRUITS))] + [f"o{i}" for i in range(len(OTHER))])
    return s


def test_no_reranker_is_the_store_query(store: Store) -> None:
    hits = retrieve(store, "a red apple", k=3)
    assert [h.id for h in hits] == [h.id for h in store.query("a red apple", k=3)]
    assert all(h.rerank_score is None for h in hits)


def test_reranker_reorders_fetched_candidates_and_keeps_both_scores(store: Store) -> None:
    first = {h.id: h.score for h in store.query("a red apple", k=30)}
    rr = WordReranker("cherry")
    hits = retrieve(store, "a red apple", k=2, reranker=rr, batch_size=64)
    assert rr.seen == [default_fetch_k(2)] == [20]
    assert hits[0].id == "f5" and hits[0].rerank_score == 1.0        # "a red cherry" moved to the top
    assert len(hits) == 2 and hits[1].rerank_score == 0.0
    for h in hits:
        assert h.score == pytest.approx(first[h.id], abs=1e-6)        # first-stage score kept
    # ties keep the first-stage order
    ties = retrieve(store, "a red apple", k=5, fetch_k=5, reranker=WordReranker("zzz"))
    assert [h.id for h in ties] == [h.id for h in store.query("a red apple", k=5)]


def test_fetch_k_and_k_are_checked(store: Store) -> None:
    rr = WordReranker("apple")
    hits = retrieve(store, "apple", k=3, fetch_k=7, reranker=rr)
    assert rr.seen == [7] and len(hits) == 3
    with pytest.raises(InputError, match="at least k"):
        retrieve(store, "apple", k=5, fetch_k=3, reranker=rr)
    with pytest.raises(InputError, match="k must be"):
        retrieve(store, "apple", k=0, reranker=rr)
    with pytest.raises(InputError, match="fetch_k must be"):
        retrieve(store, "apple", k=2, fetch_k=0)
    with pytest.raises(InputError, match="reranker must be"):
        retrieve(store, "apple", k=2, reranker=42)
    with pytest.raises(InputError, match="on_error"):
        retrieve(store, "apple", k=2, reranker=rr, on_error="ignore")  # type: ignore[arg-type]


def test_default_reranker_by_name_uses_the_store_encoder(store: Store, toy_encoder: ToyEncoder) -> None:
    pipe = Pipeline(store, reranker="default", fetch_k=10)
    assert isinstance(pipe.reranker, FusionReranker) and pipe.reranker.encoder is toy_encoder
    toy_encoder.calls.clear()
    hits = pipe.retrieve("yellow banana", k=3)
    # text candidates are scored from their first-stage scores: only the query was embedded
    assert toy_encoder.calls == [1]
    assert hits[0].id == "f0"
    assert all(0.0 <= h.rerank_score <= 1.0 for h in hits)
    assert [h.rerank_score for h in hits] == sorted((h.rerank_score for h in hits), reverse=True)


def test_unreadable_candidate_image_raises_with_id_or_is_skipped(tmp_path: Path, toy_encoder: ToyEncoder) -> None:
    store = Store(tmp_path / "db", encoder=toy_encoder)
    imgs = {c: make_png(tmp_path / f"{c}.png", rgb) for c, rgb in
            [("red", (220, 20, 20)), ("red2", (200, 30, 30)), ("blue", (20, 30, 220))]}
    store.add([{"image": p, "text": f"{c} square"} for c, p in imgs.items()], ids=list(imgs))
    imgs["red2"].write_bytes(b"this is not a png any more")
    rr = FusionReranker(toy_encoder)
    query = {"image": imgs["red"]}
    with pytest.raises(ImageLoadError, match="red2"):
        retrieve(store, query, k=3, fetch_k=3, reranker=rr)
    with pytest.warns(UserWarning, match="red2"):
        hits = retrieve(store, query, k=3, fetch_k=3, reranker=rr, on_error="skip")
    assert [h.id for h in hits][-1] == "red2" and hits[-1].rerank_score == -math.inf
    assert hits[0].id == "red" and math.isfinite(hits[1].rerank_score)
    # the same policy through a Pipeline
    with pytest.warns(UserWarning, match="red2"):
        Pipeline(store, rr, on_error="skip").retrieve(query, k=1, fetch_k=3)


def test_rerank_hits_from_elsewhere(store: Store) -> None:
    hits = store.get(["o1", "o3", "f2", "o7"])  # no first-stage scores (NaN): still reranked
    ranked = Pipeline(store, WordReranker("number 3")).rerank_hits("weather", hits, k=2)
    assert ranked[0].id == "o3" and len(ranked) == 2
    with pytest.raises(InputError, match="no reranker"):
        Pipeline(store).rerank_hits("weather", hits)


def test_cli_search_with_rerank_and_fetch_k(tmp_path: Path, toy_encoder: ToyEncoder,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`mmembed search --reranker default --fetch-k N` goes through the pipeline (toy encoder registered)."""
    from mmembed.cli import app
    from mmembed.encoders import registry

    monkeypatch.setitem(registry._NAMED, "toy-test", lambda name, **kw: toy_encoder)
    db = tmp_path / "db"
    Store(db, encoder=toy_encoder).add(FRUITS)
    res = CliRunner().invoke(app, ["search", "yellow banana", "-k", "2", "--reranker", "default", "--fetch-k", "5",
                                   "--db", str(db), "--encoder", "toy-test", "--json"])
    assert res.exit_code == 0, res.output
    import json

    rows = json.loads(res.stdout)  # stderr may carry model-loading progress
    assert len(rows) == 2 and rows[0]["rerank_score"] is not None
    assert "banana" in (rows[0].get("document") or "")
