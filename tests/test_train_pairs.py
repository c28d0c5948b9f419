"""Reading ``mmembed train`` pairs and pool files: every input form, and errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmembed.inputs import ImagePart, TextPart
from mmembed.train.finetune import build_training_data, false_negative_mask
from mmembed.train.pairs import TrainingDataError, file_digest, read_pairs, read_pool


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "img" / "red.png")
    return tmp_path


def test_every_input_form_is_coerced_and_image_paths_are_relative_to_the_file(folder: Path) -> None:
    path = _write(folder / "pairs.jsonl", [
        {"query": "a red square", "positive": {"image": "img/red.png"}, "task": "text->image", "concept": "red"},
        {"query": {"image": "img/red.png", "text": "same colour"}, "positive": "red", "instruction": "Find text."},
        {"query": ["look:", {"type": "image", "image": "img/red.png"}], "positive": {"images": ["img/red.png"]},
         "id": 7},
        "",  # blank lines are skipped
    ])
    pairs = read_pairs(path)
    assert len(pairs) == 3
    a, b, c = pairs
    assert a.query.modality == "text" and a.positive.modality == "image"
    assert Path(a.positive.images[0].uri or "") == folder / "img" / "red.png"
    assert a.instructions()[0].startswith("Retrieve an image") and len(a.instructions()) == 4
    assert a.concept == "red" and a.id.startswith("pos:") and a.line == 1
    assert b.query.modality == "image+text" and b.instructions() == ("Find text.",) and b.task is None
    assert isinstance(c.query.parts[0], TextPart) and isinstance(c.query.parts[1], ImagePart)
    assert Path(c.query.parts[1].uri or "") == folder / "img" / "red.png"
    assert c.id == "7" and c.instructions() == (None,)
    # the same positive content gets the same default id
    again = read_pairs(_write(folder / "again.jsonl", [
        {"query": "x", "positive": {"image": "img/red.png"}}, {"query": "y", "positive": {"image": "img/red.png"}}]))
    assert again[0].id == again[1].id


@pytest.mark.parametrize("rows, message", [
    (['{"query": "a", "positive": "b"}', '{"query": "a", "positive": '], r"pairs\.jsonl line 2: not valid JSON"),
    ([{"query": "a", "positive": "b"}, ["not", "an", "object"]], r"line 2: each line must be a JSON object"),
    ([{"query": "a", "positive": "b"}, {"positive": "b"}], r"line 2: 'query' is missing"),
    ([{"query": "a", "positive": None}], r"line 1: 'positive' is missing"),
    ([{"query": "a", "postive": "b"}], r"line 1: unknown key\(s\) \['postive'\]"),
    ([{"query": "a", "positive": "b", "task": "text->imgae"}], r"line 1: unknown task 'text->imgae'"),
    ([{"query": "a", "positive": "b", "instruction": ""}], r"line 1: 'instruction' must be a non-empty string"),
    ([{"query": "a", "positive": "b", "concept": ["x"]}], r"line 1: 'concept' must be a non-empty string"),
    ([{"query": "   ", "positive": "b"}], r"line 1 'query'.*empty"),
    ([{"query": "a", "positive": {"img": "x.png"}}], r"line 1 'positive'.*unknown keys"),
    ([{"query": "a", "positive": 42}], r"line 1 'positive'"),
    ([{"query": "a", "positive": "b"}], r"need at least 2 training pairs, found 1"),
])
def test_bad_pairs_name_the_line(tmp_path: Path, rows: list[object], message: str) -> None:
    path = _write(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(TrainingDataError, match=message):
        read_pairs(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="does not exist"):
        read_pairs(tmp_path / "nope.jsonl")


def test_pool_forms_and_errors(folder: Path) -> None:
    pool = read_pool(_write(folder / "pool.jsonl", [
        {"document": "a caption", "concept": "red"},
        {"text": "another", "image": "img/red.png", "id": "d2"},
        {"image": "img/red.png"},
    ]))
    assert [d.item.modality for d in pool] == ["text", "image+text", "image"]
    assert pool[0].concept == "red" and pool[1].id == "d2" and pool[2].id.startswith("doc:")
    for rows, message in [
        ([{"document": "a", "title": "x"}], r"pool\.jsonl line 1: unknown key\(s\) \['title'\] beside 'document'"),
        ([{"id": "x"}], r"line 1: no document"),
        ([{"text": "a", "url": "x"}], r"line 1: unknown key\(s\) \['url'\]"),
        ([{"document": None}], r"line 1: 'document' is null"),
        ([], r"holds no documents"),
    ]:
        with pytest.raises(TrainingDataError, match=message):
            read_pool(_write(folder / "pool.jsonl", rows))  # type: ignore[arg-type]


def test_training_data_dedups_the_pool_and_masks_false_negatives(folder: Path) -> None:
    Image.new("RGB", (8, 8), "blue").save(folder / "img" / "blue.png")
    pairs = read_pairs(_write(folder / "pairs.jsonl", [
        {"query": "red", "positive": {"image": "img/red.png"}, "task": "text->image", "concept": "red", "id": "r"},
        {"query": "blue", "positive": {"image": "img/blue.png"}, "task": "text->image", "concept": "blue"},
        {"query": "rot", "positive": "red", "task": "text->text", "concept": "red", "id": "t-red"},
    ]))
    pool = read_pool(_write(folder / "pool.jsonl", [
        {"text": "red", "concept": "red", "id": "t-red"},  # same content as pair 3's positive: merged
        {"text": "blue", "concept": "blue"},
        {"image": "img/red.png", "concept": "red"},  # same content as pair 1's positive: merged
    ]))
    data = build_training_data(pairs, pool)
    assert data.n_pairs == 3 and data.n_pool == 4  # red.png, blue.png, "red", "blue"
    assert data.positive.tolist() == [0, 1, 2]
    assert [data.modalities[m] for m in data.pool_modality] == ["image", "image", "text", "text"]
    assert data.counts() == {"text->image": 2, "text->text": 1}
    assert data.text_to_text().tolist() == [2]
    mask = false_negative_mask(data, np.array([0, 1, 2]), np.array([0, 1, 2, 3]))
    # pair 0 (red image): its positive only; the caption "red" (text, same concept) stays a negative
    assert mask[0].tolist() == [True, False, False, False]
    # pair 2 (text "red"): its positive; the red image is the other modality, so it stays a negative
    assert mask[2].tolist() == [False, False, True, False]
    assert len(data.instructions) == 8  # 4 text->image + 4 text->text phrasings
    assert file_digest(folder / "pairs.jsonl") == file_digest(folder / "pairs.jsonl")
