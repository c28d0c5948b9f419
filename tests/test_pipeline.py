"""retrieve -> rerank through a real Chroma store (ToyEncoder) with real rerankers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmembed import ImageLoadError, InputError, Pipeline, Store, retrieve
from mmembed.inputs import Interleaved
from mmembed.pipeline import (
    Ranked,
    SkippedCandidatesWarning,
    as_encoder,
    as_reranker,
    clear_model_cache,
    default_fetch_k,
    rerank,
)
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
    with pytest.warns(SkippedCandidatesWarning, match="1 rerank candidate.*left out: red2: .*red2") as caught:
        hits = retrieve(store, query, k=3, fetch_k=3, reranker=rr, on_error="skip")
    assert len(caught) == 1  # reported once, by the pipeline (not again by the reranker)
    assert [h.id for h in hits] == ["red", "blue"]  # left out, not returned with a made-up score
    assert all(math.isfinite(h.rerank_score) for h in hits)
    assert [(s.id, s.index) for s in hits.skipped] == [("red2", 1)] and "red2" in hits.skipped[0].reason
    # the same policy through a Pipeline
    with pytest.warns(SkippedCandidatesWarning, match="red2"):
        hits = Pipeline(store, rr, on_error="skip").retrieve(query, k=1, fetch_k=3)
    assert [h.id for h in hits] == ["red"] and [s.id for s in hits.skipped] == ["red2"]


def test_rerank_hits_from_elsewhere(store: Store) -> None:
    hits = store.get(["o1", "o3", "f2", "o7"])  # no first-stage scores (NaN): still reranked
    ranked = Pipeline(store, WordReranker("number 3")).rerank_hits("weather", hits, k=2)
    assert ranked[0].id == "o3" and len(ranked) == 2
    with pytest.raises(InputError, match="no reranker"):
        Pipeline(store).rerank_hits("weather", hits)


def test_rerank_sorts_cuts_and_reports_in_one_place(toy_encoder: ToyEncoder, tmp_path: Path) -> None:
    rr = WordReranker("pear")
    docs = ["an apple", "a pear", "a ripe pear", "a plum"]
    ranked = rerank(rr, "fruit", docs, top_n=2)
    assert ranked == [Ranked(1, 1.0), Ranked(2, 1.0)] and ranked.skipped == []  # ties keep the input order
    assert [r.index for r in rerank(rr, "fruit", docs)] == [1, 2, 0, 3]
    # framework objects go through to_input; one that does not convert is an error naming it, or left out
    objs = [{"t": "a pear"}, {"broken": True}, {"t": "an apple"}]

    def to_input(o: dict) -> str:
        if "t" not in o:
            raise InputError("object without text")
        return o["t"]

    with pytest.raises(InputError, match="object without text"):
        rerank(rr, "fruit", objs, to_input=to_input)
    with pytest.warns(SkippedCandidatesWarning, match="left out: b: object without text"):
        ranked = rerank(rr, "fruit", objs, to_input=to_input, ids=["a", "b", "c"], on_error="skip")
    assert [r.index for r in ranked] == [0, 2] and [(s.index, s.id) for s in ranked.skipped] == [(1, "b")]
    # an unreadable image among convertible candidates: same rule, same report
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.warns(SkippedCandidatesWarning, match="left out: #1: "):
        ranked = rerank(rr, "fruit", ["a pear", {"image": bad, "text": "pear"}], on_error="skip")
    assert [r.index for r in ranked] == [0] and ranked.skipped[0].index == 1
    with pytest.raises(InputError, match="top_n"):
        rerank(rr, "fruit", docs, top_n=0)
    with pytest.raises(InputError, match="2 ids for 4"):
        rerank(rr, "fruit", docs, ids=["a", "b"])


def test_one_loader_caches_encoders_and_rerankers(store: Store, toy_encoder: ToyEncoder,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from mmembed.encoders import registry

    loads: list[str] = []

    def load_toy(name: str, **kw: object) -> ToyEncoder:
        loads.append(name)
        return ToyEncoder()

    monkeypatch.setitem(registry._NAMED, "toy-cache-test", load_toy)
    clear_model_cache()
    a = as_encoder("toy-cache-test", device="cpu")
    assert as_encoder("toy-cache-test", device="cpu") is a and loads == ["toy-cache-test"]
    assert as_encoder(toy_encoder) is toy_encoder
    with pytest.raises(InputError, match="encoder must be"):
        as_encoder(42)  # type: ignore[arg-type]
    first = as_reranker("default", store)
    assert as_reranker("default", store) is first and first.encoder is toy_encoder  # the store's space
    assert as_reranker("default", encoder=a) is not first                            # another encoder
    assert Pipeline(store, "default").reranker is first                               # the pipeline shares it
    clear_model_cache()
    assert as_reranker("default", store) is not first
    as_encoder("toy-cache-test", device="cpu")
    assert loads == ["toy-cache-test", "toy-cache-test"]
    clear_model_cache()


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
