"""The LangChain and LlamaIndex adapters are two faces of one pipeline.

* the same parameter names and defaults (``model``, ``encoder``, ``instruction``, ``top_n``; ``k`` and
  ``similarity_top_k`` as each framework names the result count), each old name still working with a
  DeprecationWarning;
* the same rule for candidates that cannot be read: an error naming them, or with ``on_error="skip"`` left
  out and reported (:class:`mmembed.pipeline.SkippedCandidatesWarning`) -- by the retrievers and by the
  rerankers of both frameworks, on the same store;
* one loader: a model named in any adapter is loaded once per process (:mod:`mmembed.pipeline`).
"""

from __future__ import annotations

import inspect
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import ImageNode, NodeWithScore, TextNode

from langchain_mmembed import MMEmbedEmbeddings, MMEmbedRerank, MMEmbedRetriever
from llama_index.embeddings.mmembed import MMEmbedEmbedding
from llama_index.postprocessor.mmembed_rerank import MMEmbedRerank as LIRerank
from llama_index.retrievers.mmembed import MMEmbedRetriever as LIRetriever
from mmembed import ImageLoadError, InputError, Store
from mmembed.encoders import registry as encoders
from mmembed.pipeline import SkippedCandidatesWarning, clear_model_cache
from mmembed.rerankers import registry as rerankers

from llamaindex_support import ColourWordEncoder, ToyReranker, make_colour_folder

ENC = "aligned-toy-encoder"
RR = "aligned-toy-reranker"


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]]]:
    """Register a toy encoder and reranker by name, counting loads (they are real, tiny models)."""
    seen: dict[str, list[dict[str, Any]]] = {ENC: [], RR: []}

    def load_encoder(name: str, **kw: Any) -> ColourWordEncoder:
        seen[ENC].append(kw)
        return ColourWordEncoder()

    def load_reranker(name: str, **kw: Any) -> ToyReranker:
        seen[RR].append(kw)
        return ToyReranker()

    monkeypatch.setitem(encoders._NAMED, ENC, load_encoder)
    monkeypatch.setitem(rerankers._NAMED, RR, load_reranker)
    monkeypatch.delenv("MMEMBED_MODEL", raising=False)
    monkeypatch.delenv("MMEMBED_DEVICE", raising=False)
    clear_model_cache()
    yield seen
    clear_model_cache()


@pytest.fixture
def store(tmp_path: Path) -> tuple[Store, Path]:
    folder = make_colour_folder(tmp_path / "colours")
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    s = Store(tmp_path / "db", encoder=ColourWordEncoder())
    s.add([{"image": copy / f"{c}.png", "text": f"a {c} thing"} for c in ("red", "green", "blue", "yellow")],
          ids=["red", "green", "blue", "yellow"])
    return s, copy


def _params(cls: type) -> set[str]:
    return set(inspect.signature(cls).parameters)


def test_same_names_and_defaults(loads: dict[str, list[dict[str, Any]]]) -> None:
    lc_emb = MMEmbedEmbeddings(model=ENC, instruction="Find it.", device="cpu")
    li_emb = MMEmbedEmbedding(model=ENC, instruction="Find it.", device="cpu")
    assert (lc_emb.model, lc_emb.instruction) == (li_emb.model, li_emb.instruction) == (ENC, "Find it.")
    assert li_emb.model_name == ENC  # LlamaIndex's own field carries the same name
    assert lc_emb.client is li_emb.encoder  # one loader, one model
    lc_rr, li_rr = MMEmbedRerank(model=RR), LIRerank(model=RR)
    assert lc_rr.top_n == li_rr.top_n == 3 and lc_rr.model == li_rr.model == RR
    assert lc_rr.client is li_rr.reranker and len(loads[RR]) == 1
    shared = {
        (MMEmbedEmbeddings, MMEmbedEmbedding): {"model", "encoder", "task", "instruction", "device", "dtype",
                                                "model_kwargs"},
        (MMEmbedRerank, LIRerank): {"model", "reranker", "encoder", "top_n", "task", "instruction", "on_error",
                                    "batch_size", "device", "dtype", "model_kwargs"},
        (MMEmbedRetriever, LIRetriever): {"store", "path", "url", "collection", "model", "encoder", "device",
                                          "dtype", "fetch_k", "task", "instruction", "reranker", "on_error", "where"},
    }
    for (lc_cls, li_cls), names in shared.items():
        assert names <= _params(lc_cls) and names <= _params(li_cls), (lc_cls, li_cls)
    # the result count as each framework names it
    assert "k" in _params(MMEmbedRetriever) and "similarity_top_k" in _params(LIRetriever)


def test_retrievers_take_the_same_names(loads: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    lc = MMEmbedRetriever(path=str(tmp_path / "db"), model=ENC, device="cpu", k=2, instruction="Find it.")
    assert lc.get_store().count() == 0  # the LangChain retriever also writes: it creates the collection
    li = LIRetriever(path=tmp_path / "db", model=ENC, device="cpu", similarity_top_k=2, instruction="Find it.")
    assert lc.get_store().encoder is li.store.encoder and len(loads[ENC]) == 1
    assert loads[ENC][0]["device"] == "cpu"


def test_env_model_default_in_both(loads: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMEMBED_MODEL", ENC)
    assert MMEmbedEmbeddings().model == MMEmbedEmbedding().model == ENC


def test_old_names_warn_and_still_work(loads: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match=r"reranker=<name>.*model=<name>"):
        lc_rr = MMEmbedRerank(reranker=RR)
    assert lc_rr.model == RR and isinstance(lc_rr.client, ToyReranker)
    with pytest.warns(DeprecationWarning, match=r"model_name=.*use model="):
        emb = MMEmbedEmbedding(model_name=ENC)
    assert emb.model == ENC
    with pytest.warns(DeprecationWarning, match=r"query_instruction=.*use instruction="):
        emb = MMEmbedEmbedding(model=ENC, query_instruction="Find fruit.")
    assert emb.instruction == "Find fruit."
    with pytest.warns(DeprecationWarning, match=r"\.instruction"):
        assert emb.query_instruction == "Find fruit."
    with pytest.warns(DeprecationWarning, match=r"encoder_kwargs=.*use model_kwargs="):
        emb = MMEmbedEmbedding(model=ENC, encoder_kwargs={"allow_remote": False})
    assert emb.model_kwargs == {"allow_remote": False} and loads[ENC][-1]["allow_remote"] is False
    with pytest.warns(DeprecationWarning, match=r"\.model_kwargs"):
        assert emb.encoder_kwargs == {"allow_remote": False}
    with pytest.warns(DeprecationWarning, match=r"reranker_kwargs=.*use model_kwargs="):
        li_rr = LIRerank(model=RR, reranker_kwargs={"batch": 1})
    assert li_rr.model_kwargs == {"batch": 1} and loads[RR][-1]["batch"] == 1
    with pytest.warns(DeprecationWarning, match=r"\.model_kwargs"):
        assert li_rr.reranker_kwargs == {"batch": 1}
    Store(tmp_path / "db", encoder=ColourWordEncoder()).count()  # a retriever only opens an existing collection
    with pytest.warns(DeprecationWarning, match=r"encoder=.*use model="):
        li = LIRetriever(path=tmp_path / "db", encoder=ENC)
    assert isinstance(li.store.encoder, ColourWordEncoder)
    # an old and a new name that disagree: an error, not a silent choice
    with pytest.raises(InputError, match="model_name"):
        MMEmbedEmbedding(model=ENC, model_name="something-else")
    with pytest.raises(InputError, match="give model only"), pytest.warns(DeprecationWarning):
        MMEmbedRerank(model="default", reranker=RR)
    # the LlamaIndex round trip carries both model and model_name: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        again = MMEmbedEmbedding.from_dict(MMEmbedEmbedding(model=ENC, instruction="x").to_dict())
    assert again.model == ENC and again.instruction == "x"


def test_unreadable_candidates_same_rule_in_both_frameworks(store: tuple[Store, Path]) -> None:
    s, copy = store
    (copy / "green.png").write_bytes(b"no longer a png")
    lc = MMEmbedRetriever(store=s, reranker=ToyReranker(), k=4, fetch_k=4)
    li = LIRetriever(s, reranker=ToyReranker(), similarity_top_k=4, fetch_k=4)
    with pytest.raises(ImageLoadError, match="green"):
        lc.invoke("green")
    with pytest.raises(ImageLoadError, match="green"):
        li.retrieve("green")
    lc_skip = lc.model_copy(update={"on_error": "skip"})
    li.on_error = "skip"
    with pytest.warns(SkippedCandidatesWarning, match=r"left out: green: .*green\.png"):
        lc_docs = lc_skip.invoke("green")
    with pytest.warns(SkippedCandidatesWarning, match=r"left out: green: .*green\.png"):
        li_nodes = li.retrieve("green")
    assert sorted(d.id for d in lc_docs) == sorted(n.node.node_id for n in li_nodes) == ["blue", "red", "yellow"]
    # the rerankers: LangChain Documents and LlamaIndex nodes naming the same broken file
    docs = [Document("a red thing", metadata={"image": str(copy / "red.png")}, id="red"),
            Document("a green thing", metadata={"image": str(copy / "green.png")}, id="green"),
            Document("plain text", id="text")]
    nodes = [NodeWithScore(node=ImageNode(id_="red", image_path=str(copy / "red.png"), text="a red thing")),
             NodeWithScore(node=ImageNode(id_="green", image_path=str(copy / "green.png"), text="a green thing")),
             NodeWithScore(node=TextNode(id_="text", text="plain text"))]
    with pytest.raises(ImageLoadError, match="green"):
        MMEmbedRerank(reranker=ToyReranker(), top_n=3).compress_documents(docs, "red")
    with pytest.raises(ImageLoadError, match="green"):
        LIRerank(reranker=ToyReranker(), top_n=3).postprocess_nodes(nodes, query_str="red")
    with pytest.warns(SkippedCandidatesWarning, match="left out: green"):
        lc_out = MMEmbedRerank(reranker=ToyReranker(), top_n=3, on_error="skip").compress_documents(docs, "red")
    with pytest.warns(SkippedCandidatesWarning, match="left out: green"):
        li_out = LIRerank(reranker=ToyReranker(), top_n=3, on_error="skip").postprocess_nodes(nodes, query_str="red")
    assert [d.id for d in lc_out] == [n.node.node_id for n in li_out] == ["red", "text"]
    assert [d.metadata["relevance_score"] for d in lc_out] == pytest.approx([n.score for n in li_out])
    # a framework object that does not convert (bad metadata / bad base64) follows the same rule
    bad_doc = Document("x", metadata={"image": 42}, id="bad-meta")
    with pytest.warns(SkippedCandidatesWarning, match="left out: bad-meta"):
        out = MMEmbedRerank(reranker=ToyReranker(), on_error="skip").compress_documents([docs[0], bad_doc], "red")
    assert [d.id for d in out] == ["red"]
    with pytest.raises(InputError, match="bad-meta"):
        MMEmbedRerank(reranker=ToyReranker()).compress_documents([docs[0], bad_doc], "red")
