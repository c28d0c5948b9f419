"""``mmembed demo`` end to end on real Tux Paint stamps (the README's first command runs it on all of them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmembed.cli import app


@pytest.mark.network_data
def test_demo_indexes_searches_and_lets_the_task_pick_the_modality(tmp_path: Path) -> None:
    db = tmp_path / "db"
    res = CliRunner().invoke(app, ["demo", "--db", str(db), "--limit", "60", "-k", "3"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "60 added, 0 already indexed, 0 skipped; 60 images in the collection" in out
    assert "search by image:" in out and "Images and their captions in one collection" in out
    mixed = out.split("Images and their captions in one collection", 1)[1]
    as_image = mixed.split("(task text->image)", 1)[1].split("(task text->text)", 1)[0]
    as_text = mixed.split("(task text->text)", 1)[1]
    # one query, two instructions: images for text->image, caption texts for text->text
    assert re.findall(r"\[(\S+)\]", as_image) == ["image"] * 3
    assert re.findall(r"\[(\S+)\]", as_text)[:3] == ["text"] * 3
    # a rerun recognises every stored item by its content hash and embeds nothing again
    again = CliRunner().invoke(app, ["demo", "--db", str(db), "--limit", "60", "-k", "3"])
    assert again.exit_code == 0 and "0 added, 60 already indexed" in again.output
    assert "0 added, 120 already indexed" in again.output
