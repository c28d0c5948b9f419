"""The modality-bias benchmark (``mmembed eval tuxpaint-mixed``): pool layout, ModAcc@1, runner and table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmembed.eval.datasets import DATASETS, DatasetError, available_datasets
from mmembed.eval.modality import MixedPool, ModalitySubset, modality_top1, tuxpaint_mixed
from mmembed.eval.runner import evaluate, format_table


@dataclass
class FakeStamp:
    id: str
    image_path: Path
    caption: str
    translations: dict[str, str] = field(default_factory=dict)


@pytest.fixture()
def stamps(tmp_path: Path) -> list[FakeStamp]:
    out = []
    for i, (name, color, de) in enumerate([("A red ball.", "red", "Ein roter Ball."),
                                           ("A blue box.", "blue", "Eine blaue Kiste."),
                                           ("A red ball.", "darkred", "Ein roter Ball."),  # shared caption
                                           ("A green leaf.", "green", "A green leaf.")]):  # untranslated
        path = tmp_path / f"s{i}.png"
        Image.new("RGB", (16, 16), color).save(path)
        out.append(FakeStamp(f"cat/s{i}", path, name, {"de": de, "ja": f"{name} (ja)"}))
    return out


def test_pool_holds_images_and_captions_with_their_modalities(stamps: list[FakeStamp]) -> None:
    ds = tuxpaint_mixed(stamps=stamps)
    t2i, t2t, i2t = ds.subsets
    pool = t2i.pool
    assert isinstance(pool, MixedPool) and t2t.pool is pool and i2t.pool is pool
    assert len(pool) == 8 and pool.modalities == ["image"] * 4 + ["text"] * 4
    assert pool.items[:4] == [s.image_path for s in stamps] and pool.items[4:] == [s.caption for s in stamps]
    assert isinstance(t2i, ModalitySubset) and t2i.target_modality == "image" and t2i.task == "text->image"
    # distinct captions; the shared one is relevant to both of its images
    assert t2i.queries == ["A red ball.", "A blue box.", "A green leaf."]
    assert t2i.relevant == [(0, 2), (1,), (3,)]
    assert t2t.target_modality == "text" and t2t.task == "text->text"
    # translations (untranslated fallbacks dropped, duplicates merged) -> every caption text of that caption
    queries = dict(zip(t2t.queries, t2t.relevant))
    assert queries["Ein roter Ball."] == (4, 6) and queries["Eine blaue Kiste."] == (5,)
    assert "A green leaf." not in queries and queries["A green leaf. (ja)"] == (7,)
    # image->text: each stamp's image mirrored (not byte-identical to its pool image) -> its caption texts
    assert i2t.target_modality == "text" and i2t.task == "image->text" and len(i2t) == 4
    assert i2t.relevant == [(4, 6), (5,), (4, 6), (7,)]
    assert i2t.query_ids == [f"mirrored:{s.id}" for s in stamps] and i2t.query_texts is None
    half = Image.new("RGB", (16, 16), "white")
    half.paste((255, 0, 0), (0, 0, 8, 16))
    half.save(stamps[0].image_path)
    mirrored = tuxpaint_mixed(stamps=stamps).subsets[2].queries[0].convert("RGB")
    assert mirrored.getpixel((0, 0)) == (255, 255, 255) and mirrored.getpixel((15, 0)) == (255, 0, 0)
    with pytest.raises(DatasetError, match="none of the languages"):
        tuxpaint_mixed(stamps=stamps, languages=("xx",))
    with pytest.raises(DatasetError, match="modalities"):
        MixedPool(key="k", items=["a", "b"], ids=["1", "2"], modalities=["text"])


def test_modality_top1_counts_ties_fractionally() -> None:
    mods = ["image", "text", "image"]
    scores = np.array([[0.9, 0.1, 0.2],   # image on top
                       [0.1, 0.9, 0.2],   # text on top
                       [0.5, 0.5, 0.1],   # tie image/text -> 0.5
                       [0.7, 0.7, 0.7]])  # three-way tie, two images -> 2/3
    np.testing.assert_allclose(modality_top1(scores, mods, "image"), [1.0, 0.0, 0.5, 2 / 3])
    np.testing.assert_allclose(modality_top1(scores, mods, "text"), [0.0, 1.0, 0.5, 1 / 3])
    with pytest.raises(ValueError, match="do not match"):
        modality_top1(scores, ["image"], "image")


def test_runner_reports_modality_accuracy_and_chance(stamps: list[FakeStamp], toy_encoder) -> None:  # type: ignore[no-untyped-def]
    ds = tuxpaint_mixed(stamps=stamps)
    rows = evaluate(ds, toy_encoder, baselines=["chance"])
    by = {(r.subset, r.system): r for r in rows}
    toy = by[("text->image", "toy-v1")]
    # a text-only similarity model returns the identical caption text: the bias the benchmark measures
    assert toy.metrics["ModAcc@1"] == 0.0
    assert by[("text->text", "toy-v1")].metrics["ModAcc@1"] == 1.0
    assert by[("image->text", "toy-v1")].metrics["ModAcc@1"] in (0.0, 1.0)  # computed for image queries too
    assert by[("text->image", "chance")].metrics["ModAcc@1"] == pytest.approx(0.5)
    table = format_table(rows)
    assert "ModAcc@1" in table.splitlines()[0]
    # other datasets keep their columns
    from mmembed.eval.datasets import tuxpaint

    plain = evaluate(tuxpaint(stamps=stamps), toy_encoder, baselines=False)
    assert "ModAcc@1" not in plain[0].metrics and "ModAcc@1" not in format_table(plain)


def test_registered_in_the_eval_harness() -> None:
    assert "tuxpaint-mixed" in DATASETS and "tuxpaint-mixed" in available_datasets()
    assert "ModAcc@1" in (DATASETS["tuxpaint-mixed"].__doc__ or "")


def test_the_datasets_never_import_the_modality_module() -> None:
    """One direction only: mmembed.eval.modality (the metric) may import the datasets, never the reverse."""
    import ast
    from pathlib import Path

    import mmembed.eval.datasets as pkg

    folder = Path(pkg.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                assert "modality" not in target, f"{path.name} imports {target}"
            elif isinstance(node, ast.Import):
                assert not any("modality" in a.name for a in node.names), f"{path.name} imports modality"
    # and the names stay importable from both places
    from mmembed.eval.datasets import MixedPool as A, tuxpaint_mixed as f
    from mmembed.eval.modality import MixedPool as B, tuxpaint_mixed as g

    assert A is B and f is g
