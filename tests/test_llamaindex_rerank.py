"""``MMEmbedRerank`` as a LlamaIndex node postprocessor: text and image nodes (image from base64, path or URL)
scored against text, image and composed query bundles; scores set, top_n kept in order; async; bad nodes."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, QueryBundle, TextNode

from llama_index.embeddings.mmembed import MMEmbedEmbedding
from llama_index.postprocessor.mmembed_rerank import MMEmbedRerank
from mmembed import ImageLoadError, InputError

from llamaindex_support import ColourWordEncoder, ToyReranker, make_colour_folder, no_network  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_colour_folder(tmp_path / "colours")


def _nodes(folder: Path) -> list[NodeWithScore]:
    """Mixed nodes, deliberately in a poor order with made-up retrieval scores."""
    b64 = base64.b64encode((folder / "yellow.png").read_bytes()).decode()
    data_url = "data:image/png;base64," + base64.b64encode((folder / "green.png").read_bytes()).decode()
    nodes = [
        TextNode(id_="t-sea", text="the blue sea under the sky"),
        ImageNode(id_="i-yellow", image=b64),
        ImageNode(id_="i-green", image_url=data_url, text="a green leaf"),
        TextNode(id_="t-apple", text="a red apple on a table", metadata={"shelf": "fruit"}),
        ImageNode(id_="i-red", image_path=str(folder / "red.png")),
        ImageNode(id_="i-blue", image_path=str(folder / "blue.png"), text="the blue sea"),
    ]
    return [NodeWithScore(node=n, score=0.9 - 0.1 * i) for i, n in enumerate(nodes)]


def _ids(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.node_id for n in nodes]


def test_is_a_postprocessor_with_described_fields() -> None:
    rr = MMEmbedRerank(reranker=ToyReranker(), top_n=2, task="text->image")
    assert isinstance(rr, BaseNodePostprocessor) and MMEmbedRerank.class_name() == "MMEmbedRerank"
    for name in ("model", "top_n", "task", "instruction", "on_error", "keep_retrieval_score", "metadata_mode"):
        assert MMEmbedRerank.model_fields[name].description, name
    assert rr.model == "toy-reranker" and rr.to_dict()["top_n"] == 2


def test_text_query_scores_every_node_and_keeps_top_n(folder: Path) -> None:
    reranker = ToyReranker()
    nodes = _nodes(folder)
    out = MMEmbedRerank(reranker=reranker, top_n=3).postprocess_nodes(nodes, query_str="red")
    assert reranker.seen == [6] and len(out) == 3
    assert set(_ids(out[:2])) == {"t-apple", "i-red"}
    # the scores are exactly the reranker's, each node read as text / image (+ its text)
    direct = dict(zip(_ids(_nodes(folder)), reranker.score("red", [
        "the blue sea under the sky",
        {"image": (folder / "yellow.png").read_bytes()},
        {"image": (folder / "green.png").read_bytes(), "text": "a green leaf"},
        TextNode(text="a red apple on a table", metadata={"shelf": "fruit"}).get_content(MetadataMode.EMBED),
        {"image": folder / "red.png"},
        {"image": folder / "blue.png", "text": "the blue sea"},
    ])))
    assert [n.score for n in out] == pytest.approx([direct[i] for i in _ids(out)])
    assert [n.score for n in out] == sorted(direct.values(), reverse=True)[:3]


def test_image_and_composed_queries(folder: Path) -> None:
    rr = MMEmbedRerank(reranker=ToyReranker(), top_n=6)
    by_image = rr.postprocess_nodes(_nodes(folder), QueryBundle(query_str="", image_path=str(folder / "yellow.png")))
    assert _ids(by_image)[0] == "i-yellow"
    composed = rr.postprocess_nodes(_nodes(folder),
                                    QueryBundle(query_str="the blue sea", image_path=str(folder / "blue.png")))
    assert _ids(composed)[0] == "i-blue"  # image and text both match
    assert len(composed) == 6


def test_keep_retrieval_score_and_instruction(folder: Path) -> None:
    rr = MMEmbedRerank(reranker=ToyReranker(), top_n=1, keep_retrieval_score=True, instruction="Find fruit.")
    [best] = rr.postprocess_nodes(_nodes(folder), query_str="a red apple")
    assert best.node.node_id == "t-apple" and best.node.metadata["retrieval_score"] == pytest.approx(0.6)
    plain = MMEmbedRerank(reranker=ToyReranker(), top_n=1).postprocess_nodes(_nodes(folder), query_str="a red apple")
    assert best.score != pytest.approx(plain[0].score)  # the instruction reached the reranker


def test_reranker_built_from_the_embedding_encoder(folder: Path) -> None:
    """The default reranker re-scores with the first-stage encoder: an MMEmbedEmbedding can be handed over."""
    embed = MMEmbedEmbedding(encoder=ColourWordEncoder())
    rr = MMEmbedRerank("default", encoder=embed, top_n=2)
    assert rr.reranker.encoder is embed.encoder  # re-scores in the space the nodes were embedded in
    out = rr.postprocess_nodes(_nodes(folder), query_str="a red apple on a table")
    assert len(out) == 2 and "t-apple" in _ids(out)
    assert out[0].score >= out[1].score


async def test_async_postprocess_matches_sync(folder: Path) -> None:
    rr = MMEmbedRerank(reranker=ToyReranker(), top_n=4)
    sync = rr.postprocess_nodes(_nodes(folder), query_str="green")
    result = await rr.apostprocess_nodes(_nodes(folder), query_str="green")
    assert [(n.node.node_id, n.score) for n in result] == [(n.node.node_id, n.score) for n in sync]


def test_empty_and_missing_query() -> None:
    rr = MMEmbedRerank(reranker=ToyReranker(), top_n=2)
    assert rr.postprocess_nodes([], query_str="x") == []
    with pytest.raises(InputError, match="needs the query"):
        rr.postprocess_nodes([NodeWithScore(node=TextNode(text="a"), score=1.0)])
    with pytest.raises(InputError, match="no text and no image"):
        rr.postprocess_nodes([NodeWithScore(node=TextNode(text="a"), score=1.0)], QueryBundle(query_str=""))


def test_bad_nodes_raise_naming_the_node(folder: Path, tmp_path: Path) -> None:
    rr = MMEmbedRerank(reranker=ToyReranker(), top_n=3)
    missing = NodeWithScore(node=ImageNode(id_="gone", image_path=str(tmp_path / "gone.png")), score=0.1)
    with pytest.raises(ImageLoadError, match="gone"):
        rr.postprocess_nodes(_nodes(folder) + [missing], query_str="red")
    broken = NodeWithScore(node=ImageNode(id_="bad-b64", image="not base64 at all!"), score=0.1)
    with pytest.raises(InputError, match="bad-b64.*base64"):
        rr.postprocess_nodes(_nodes(folder) + [broken], query_str="red")
    junk = NodeWithScore(node=ImageNode(id_="junk", image=base64.b64encode(b"GIF89a junk").decode()), score=0.1)
    with pytest.raises(ImageLoadError, match="junk"):
        rr.postprocess_nodes(_nodes(folder) + [junk], query_str="red")
    empty = NodeWithScore(node=TextNode(id_="empty", text=""), score=0.1)
    with pytest.raises(InputError, match="empty"):
        rr.postprocess_nodes([empty], query_str="red")
    remote = NodeWithScore(node=ImageNode(id_="remote", image_url="https://example.invalid/cat.png"), score=0.1)
    with pytest.raises(ImageLoadError, match="remote.*remote images are off"):  # refused, no connection tried
        rr.postprocess_nodes([remote], query_str="red")
    with pytest.raises(ImageLoadError, match="does not exist"):
        rr.postprocess_nodes(_nodes(folder), QueryBundle(query_str="red", image_path=str(tmp_path / "nope.png")))


def test_skip_drops_unreadable_nodes_with_a_warning(folder: Path, tmp_path: Path) -> None:
    rr = MMEmbedRerank(reranker=ToyReranker(), top_n=10, on_error="skip")
    extra = [
        NodeWithScore(node=ImageNode(id_="gone", image_path=str(tmp_path / "gone.png")), score=0.1),
        NodeWithScore(node=ImageNode(id_="bad-b64", image="%%%"), score=0.1),
    ]
    with pytest.warns(UserWarning) as record:
        out = rr.postprocess_nodes(_nodes(folder) + extra, query_str="red")
    assert sorted(_ids(out)) == sorted(_ids(_nodes(folder)))
    text = " ".join(str(w.message) for w in record)
    assert "gone" in text and "bad-b64" in text
    with pytest.raises(ValueError):
        MMEmbedRerank(reranker=ToyReranker(), on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MMEmbedRerank(reranker=ToyReranker(), top_n=0)
