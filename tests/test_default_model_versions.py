"""The bundled model versions: the default is mmembed-mini-v3; mmembed-mini-v2 stays loadable by name. A
collection built with v2 refuses the default with advice that names the way out; and the default keeps an image +
text document findable by a plain text query (a first v3 did not: its model card)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mmembed
from mmembed import EncoderMismatchError, Store
from conftest import make_png


def test_the_default_is_v3_and_v2_loads_by_name() -> None:
    default = mmembed.load_encoder("default")
    assert default.name.startswith("mmembed-mini-v3-")
    assert mmembed.load_encoder("mmembed-mini").name == mmembed.load_encoder("mmembed-mini-v3").name == default.name
    assert mmembed.load_encoder().name == default.name
    v2 = mmembed.load_encoder("mmembed-mini-v2")
    assert v2.name.startswith("mmembed-mini-v2-") and v2.name != default.name
    assert mmembed.load_encoder("mmembed-mini-v2-towers").name.startswith("mmembed-mini-v2-towers-")
    towers = mmembed.load_encoder("mmembed-mini-towers")
    assert towers.name.startswith("mmembed-mini-v3-towers-") and towers.name == mmembed.load_encoder(
        "mmembed-mini-v3-towers").name


def test_a_v2_collection_names_the_way_out(tmp_path: Path) -> None:
    img = make_png(tmp_path / "red.png", (220, 20, 20))
    db = tmp_path / "db"
    Store(db, collection="stamps", encoder="mmembed-mini-v2").add([{"image": str(img)}], ids=["red"])
    with pytest.raises(EncoderMismatchError) as err:
        Store(db, collection="stamps").count()  # the default is v3 now
    msg = str(err.value)
    assert "mmembed-mini-v2-" in msg and "mmembed-mini-v3-" in msg
    assert "load_encoder('mmembed-mini-v2')" in msg and "--encoder mmembed-mini-v2" in msg
    assert "mmembed index PATH --db DB -c stamps-new" in msg
    hits = Store(db, collection="stamps", encoder="mmembed-mini-v2").query("a red square", k=1)
    assert [h.id for h in hits] == ["red"]


@pytest.mark.parametrize("task", [None, "text->text"])
def test_the_default_keeps_a_page_with_an_image_findable_by_its_words(tmp_path: Path, task: str | None) -> None:
    """An image + text document (a screenshot with its OCR text, a PDF page with its text layer) ranks above
    unrelated text documents for a plain text query that its text answers. A first v3's document adapter broke
    this; the shipped one was trained so it holds (``mmembed.train.finetune.batch_mask``)."""
    from documents_support import text_image

    shot = tmp_path / "dialog.png"
    text_image(shot, ["Printer spooler stopped", "unexpectedly at midnight"])
    docs = [{"text": "Printer spooler stopped unexpectedly at midnight", "image": str(shot)},
            "Weather\n\nThunderstorms expected on the coast.",
            "Questions\n\nHow do I water cactus plants? Rarely, once a month.",
            "Chapter one: assembling the bookshelf with four screws."]
    enc = mmembed.load_encoder("default")
    scores = enc.encode_documents(docs) @ enc.encode_queries(["printer spooler stopped"], task=task)[0]
    assert int(np.argmax(scores)) == 0, np.round(scores, 3)


def test_the_captioned_set_puts_image_and_text_documents_among_texts(tmp_path: Path) -> None:
    """``tuxpaint-captioned``: half the captions as stamp + caption, half as text alone, the first asked with
    no instruction; on a few stamps the default finds every captioned one first."""
    from dataclasses import dataclass

    from mmembed.eval import evaluate
    from mmembed.eval.datasets import tuxpaint_captioned

    @dataclass
    class Stamp:
        id: str
        image_path: Path
        caption: str

    colours = {"A red square.": (220, 20, 20), "A blue square.": (20, 20, 220), "A green square.": (20, 200, 20),
               "A black square.": (0, 0, 0), "A yellow square.": (240, 220, 0), "A grey square.": (128, 128, 128)}
    stamps = [Stamp(f"s{i}", make_png(tmp_path / f"s{i}.png", rgb), cap) for i, (cap, rgb) in enumerate(colours.items())]
    ds = tuxpaint_captioned(stamps=stamps)
    (sub,) = ds.subsets
    assert sub.task is None and len(sub.queries) == 3 and len(sub.pool) == 6
    assert sorted(sub.pool.modalities) == ["image+text"] * 3 + ["text"] * 3
    for q, rel in zip(sub.queries, sub.relevant):
        (j,) = rel
        assert sub.pool.items[j]["text"] == q  # each query's relevant document holds its own words
    rows = evaluate(ds, mmembed.load_encoder(), baselines=False)
    assert rows[0].metrics["R@1"] == 1.0
