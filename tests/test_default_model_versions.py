"""The bundled model versions: the default stays mmembed-mini-v2; mmembed-mini-v3 ships by name. A collection
built with one refuses the other with advice that names the way out; and the default keeps an image + text
document findable by a plain text query, which v3 does not (its model card)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mmembed
from mmembed import EncoderMismatchError, Store
from conftest import make_png


def test_the_default_is_v2_and_v3_loads_by_name() -> None:
    default = mmembed.load_encoder("default")
    assert default.name.startswith("mmembed-mini-v2-")
    assert mmembed.load_encoder("mmembed-mini").name == mmembed.load_encoder("mmembed-mini-v2").name == default.name
    v3 = mmembed.load_encoder("mmembed-mini-v3")
    assert v3.name.startswith("mmembed-mini-v3-") and v3.name != default.name
    assert mmembed.load_encoder("mmembed-mini-v3-towers").name.startswith("mmembed-mini-v3-towers-")


def test_a_collection_of_another_version_names_the_way_out(tmp_path: Path) -> None:
    img = make_png(tmp_path / "red.png", (220, 20, 20))
    db = tmp_path / "db"
    Store(db, collection="stamps", encoder="mmembed-mini-v3").add([{"image": str(img)}], ids=["red"])
    with pytest.raises(EncoderMismatchError) as err:
        Store(db, collection="stamps").count()
    msg = str(err.value)
    assert "mmembed-mini-v3-" in msg and "mmembed-mini-v2-" in msg
    assert "load_encoder('mmembed-mini-v3')" in msg and "--encoder mmembed-mini-v3" in msg
    assert "mmembed index PATH --db DB -c stamps-new" in msg
    hits = Store(db, collection="stamps", encoder="mmembed-mini-v3").query("a red square", k=1)
    assert [h.id for h in hits] == ["red"]


@pytest.mark.parametrize("task", [None, "text->text"])
def test_the_default_keeps_a_page_with_an_image_findable_by_its_words(tmp_path: Path, task: str | None) -> None:
    """An image + text document (a screenshot with its OCR text, a PDF page with its text layer) ranks above
    unrelated text documents for a plain text query that its text answers. mmembed-mini-v3's document adapter
    breaks this, which is why it is not the default."""
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
