"""The default model moved from mmembed-mini-v2 to v3: v2 stays loadable by name, and a collection built with
v2 refuses the new default with advice that names v2 and the re-index command."""

from __future__ import annotations

from pathlib import Path

import pytest

import mmembed
from mmembed import EncoderMismatchError, Store
from conftest import make_png


def test_the_default_is_v3_and_v2_stays_loadable() -> None:
    default = mmembed.load_encoder("default")
    assert default.name.startswith("mmembed-mini-v3-")
    assert mmembed.load_encoder("mmembed-mini").name == default.name == mmembed.load_encoder("mmembed-mini-v3").name
    v2 = mmembed.load_encoder("mmembed-mini-v2")
    assert v2.name.startswith("mmembed-mini-v2-") and v2.name != default.name
    assert mmembed.load_encoder("mmembed-mini-v2-towers").name.startswith("mmembed-mini-v2-towers-")


def test_a_v2_collection_refuses_the_new_default_and_names_the_way_out(tmp_path: Path) -> None:
    img = make_png(tmp_path / "red.png", (220, 20, 20))
    db = tmp_path / "db"
    Store(db, collection="stamps", encoder="mmembed-mini-v2").add([{"image": str(img)}], ids=["red"])
    with pytest.raises(EncoderMismatchError) as err:
        Store(db, collection="stamps").count()
    msg = str(err.value)
    assert "mmembed-mini-v2-" in msg and "mmembed-mini-v3-" in msg
    assert "load_encoder('mmembed-mini-v2')" in msg and "--encoder mmembed-mini-v2" in msg
    assert "mmembed index PATH --db DB -c stamps-new" in msg
    # and it still works with the encoder that built it
    hits = Store(db, collection="stamps", encoder="mmembed-mini-v2").query("a red square", k=1)
    assert [h.id for h in hits] == ["red"]
