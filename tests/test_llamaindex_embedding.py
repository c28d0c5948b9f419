"""``MMEmbedEmbedding`` as a LlamaIndex ``MultiModalEmbedding``: queries with instructions, texts, images from
paths and BytesIO, composed image+text queries, batching, async paths that leave the loop free, bad inputs."""

from __future__ import annotations

import asyncio
import threading
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from llama_index.core.embeddings import MultiModalEmbedding

from llama_index.embeddings.mmembed import MMEmbedEmbedding
from mmembed import ImageLoadError, InputError, ModelLoadError, resolve_instruction

from llamaindex_support import CAPTIONS, ColourWordEncoder, make_colour_folder, no_network  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_colour_folder(tmp_path / "colours")


@pytest.fixture
def enc() -> ColourWordEncoder:
    return ColourWordEncoder()


def _png_bytes(path: Path) -> BytesIO:
    return BytesIO(path.read_bytes())


def test_is_a_multimodal_embedding_with_described_fields(enc: ColourWordEncoder) -> None:
    emb = MMEmbedEmbedding(encoder=enc, task="text->image", embed_batch_size=8)
    assert isinstance(emb, MultiModalEmbedding)
    assert MMEmbedEmbedding.class_name() == "MMEmbedEmbedding"
    assert emb.model_name == enc.name and emb.encoder is enc and emb.dim == enc.dim
    assert emb.model == enc.name
    for name in ("model", "model_name", "task", "instruction", "device", "dtype", "model_kwargs"):
        assert MMEmbedEmbedding.model_fields[name].description, name
    data = emb.to_dict()
    assert data["class_name"] == "MMEmbedEmbedding"
    assert data["task"] == "text->image" and data["embed_batch_size"] == 8


def test_query_embedding_carries_the_instruction_and_texts_do_not(enc: ColourWordEncoder) -> None:
    emb = MMEmbedEmbedding(encoder=enc, task="text->image")
    q = np.asarray(emb.get_query_embedding("a red apple"))
    t = np.asarray(emb.get_text_embedding("a red apple"))
    assert q.shape == t.shape == (enc.dim,)
    np.testing.assert_allclose(np.linalg.norm(q), 1.0, atol=1e-5)
    instr = resolve_instruction("text->image", None)
    np.testing.assert_allclose(q, enc.encode_queries(["a red apple"], instruction=instr)[0], atol=1e-6)
    np.testing.assert_allclose(t, enc.encode_documents(["a red apple"])[0], atol=1e-6)
    assert not np.allclose(q, t)  # the instruction changed the query
    free = MMEmbedEmbedding(encoder=enc, task="text->image", instruction="Find the fruit.")
    np.testing.assert_allclose(free.get_query_embedding("a red apple"),
                               enc.encode_queries(["a red apple"], instruction="Find the fruit.")[0], atol=1e-6)


def test_text_batches_follow_embed_batch_size(enc: ColourWordEncoder) -> None:
    emb = MMEmbedEmbedding(encoder=enc, embed_batch_size=2)
    texts = [f"caption number {i}" for i in range(5)]
    vecs = emb.get_text_embedding_batch(texts)
    assert enc.calls == [2, 2, 1]
    np.testing.assert_allclose(np.asarray(vecs), enc.encode_documents(texts), atol=1e-6)


def test_image_from_path_and_bytesio_agree_and_match_their_caption(enc: ColourWordEncoder, folder: Path) -> None:
    emb = MMEmbedEmbedding(encoder=enc)
    by_path = np.asarray(emb.get_image_embedding(str(folder / "red.png")))
    buf = _png_bytes(folder / "red.png")
    buf.read()  # a buffer someone already read to the end still works
    by_bytes = np.asarray(emb.get_image_embedding(buf))
    np.testing.assert_allclose(by_path, by_bytes, atol=1e-6)
    # cross-modal: the red image is closest to the red caption's query
    batch = np.asarray(emb.get_image_embedding_batch([str(folder / f"{c}.png") for c in CAPTIONS]))
    assert batch.shape == (4, enc.dim)
    q = np.asarray(emb.get_query_embedding("something red"))
    assert list(CAPTIONS)[int(np.argmax(batch @ q))] == "red"


def test_composed_image_and_text_query(enc: ColourWordEncoder, folder: Path) -> None:
    emb = MMEmbedEmbedding(encoder=enc, task="image->image+text")
    img = str(folder / "blue.png")
    both = np.asarray(emb.get_multimodal_query_embedding("the sea", img))
    instr = resolve_instruction("image->image+text", None)
    np.testing.assert_allclose(both, enc.encode_queries([{"image": img, "text": "the sea"}], instruction=instr)[0],
                               atol=1e-6)
    assert not np.allclose(both, emb.get_multimodal_query_embedding("the sea"))
    assert not np.allclose(both, emb.get_multimodal_query_embedding(image=_png_bytes(folder / "blue.png")))
    with pytest.raises(InputError, match="no text and no image"):
        emb.get_multimodal_query_embedding()


async def test_async_variants_match_sync(enc: ColourWordEncoder, folder: Path) -> None:
    emb = MMEmbedEmbedding(encoder=enc, task="text->image", embed_batch_size=2)
    paths = [str(folder / f"{c}.png") for c in CAPTIONS]
    np.testing.assert_allclose(await emb.aget_query_embedding("red"), emb.get_query_embedding("red"), atol=1e-6)
    np.testing.assert_allclose(await emb.aget_text_embedding("red"), emb.get_text_embedding("red"), atol=1e-6)
    np.testing.assert_allclose(await emb.aget_text_embedding_batch(list(CAPTIONS.values())),
                               emb.get_text_embedding_batch(list(CAPTIONS.values())), atol=1e-6)
    np.testing.assert_allclose(await emb.aget_image_embedding(paths[0]), emb.get_image_embedding(paths[0]), atol=1e-6)
    np.testing.assert_allclose(await emb.aget_image_embedding_batch(paths), emb.get_image_embedding_batch(paths),
                               atol=1e-6)
    np.testing.assert_allclose(await emb.aget_multimodal_query_embedding("sea", paths[2]),
                               emb.get_multimodal_query_embedding("sea", paths[2]), atol=1e-6)


class SlowEncoder(ColourWordEncoder):
    """Takes 0.2 s per batch and records the thread it ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def _encode_batch(self, items, *, instruction, is_query):  # type: ignore[no-untyped-def]
        self.threads.append(threading.get_ident())
        time.sleep(0.2)
        return super()._encode_batch(items, instruction=instruction, is_query=is_query)


async def test_async_calls_do_not_block_the_event_loop(folder: Path) -> None:
    enc = SlowEncoder()
    emb = MMEmbedEmbedding(encoder=enc, embed_batch_size=1)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await emb.aget_query_embedding("red")
    await emb.aget_image_embedding(str(folder / "red.png"))
    await emb.aget_text_embedding_batch(["a", "b"])
    stop.set()
    await task
    # ~0.8 s of model time: the loop kept ticking the whole while, and the model ran off the loop thread
    assert ticks >= 20, ticks
    assert threading.get_ident() not in enc.threads


def test_bad_inputs_fail_with_clear_errors(enc: ColourWordEncoder, tmp_path: Path) -> None:
    emb = MMEmbedEmbedding(encoder=enc)
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError, match="nope.png.*does not exist"):
        emb.get_image_embedding(str(missing))
    with pytest.raises(ImageLoadError, match="not a readable image"):
        emb.get_image_embedding(BytesIO(b"this is not an image"))
    (tmp_path / "fake.png").write_text("not a png either")
    with pytest.raises(ImageLoadError, match="fake.png"):
        emb.get_image_embedding_batch([str(tmp_path / "fake.png")])
    with pytest.raises(InputError, match="no bytes"):
        emb.get_image_embedding(BytesIO())
    with pytest.raises(InputError, match="empty image path"):
        emb.get_image_embedding("  ")
    with pytest.raises(InputError, match="expected text"):
        emb.get_text_embedding(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="whitespace"):
        emb.get_query_embedding("   ")
    with pytest.raises(InputError, match="unknown task|task"):
        MMEmbedEmbedding(encoder=enc, task="no-such-task")
    with pytest.raises(InputError, match="mmembed.Encoder"):
        MMEmbedEmbedding(encoder="default")  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match="unknown encoder"):
        MMEmbedEmbedding("no-such-model-anywhere")


async def test_async_bad_inputs_raise_the_same_errors(enc: ColourWordEncoder, tmp_path: Path) -> None:
    emb = MMEmbedEmbedding(encoder=enc)
    with pytest.raises(ImageLoadError, match="does not exist"):
        await emb.aget_image_embedding(str(tmp_path / "nope.png"))
    with pytest.raises(ImageLoadError, match="not a readable image"):
        await emb.aget_image_embedding_batch([BytesIO(b"\x89PNG broken")])
