from __future__ import annotations

import numpy as np
import pytest

from mmembed import InputError, get_task, list_tasks, resolve_instruction
from mmembed.instructions import mbeir_task_for

from conftest import ToyEncoder


def test_generic_and_mbeir_tasks_exist_with_paraphrases() -> None:
    names = {t.name for t in list_tasks()}
    for name in ["text->image", "image->text", "image+text->image", "text->text", "question->passage"]:
        assert name in names
        assert len(get_task(name).instructions) >= 4
    assert get_task("mbeir:mscoco:text->image").instruction == "Find me an everyday image that matches the given caption."
    assert mbeir_task_for("CIRR", "image+text", "image").dataset == "CIRR"
    assert mbeir_task_for("nope", "text", "image") is None


def test_resolution_rules() -> None:
    assert resolve_instruction() is None
    assert resolve_instruction(task="text->image") == get_task("text->image").instruction
    assert resolve_instruction(task="text->image", instruction="  custom  ") == "custom"
    with pytest.raises(InputError, match="unknown task 'text->imag'.*Did you mean: text-to-image,"):
        resolve_instruction(task="text->imag")


def test_queries_get_instructions_documents_never() -> None:
    enc = ToyEncoder()
    plain = enc.encode_queries(["a red apple"])
    steered = enc.encode_queries(["a red apple"], task="text->image")
    assert not np.allclose(plain, steered)
    assert np.allclose(enc.encode_documents(["a red apple"]), plain)


def test_encoder_output_contract() -> None:
    enc = ToyEncoder()
    out = enc.encode_documents(["one", "two", "three"], batch_size=2)
    assert out.dtype == np.float32 and out.shape == (3, enc.dim)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert enc.calls == [2, 1]
    assert enc.encode_documents([]).shape == (0, enc.dim)
    assert np.array_equal(out, enc.encode_documents(["one", "two", "three"]))
    with pytest.raises(InputError, match="document #1"):
        enc.encode_documents(["ok", "  "])
    with pytest.raises(InputError, match="batch_size"):
        enc.encode_documents(["ok"], batch_size=0)


def test_every_arrow_task_has_a_shell_safe_alias() -> None:
    arrows = [t for t in list_tasks() if "->" in t.name]
    assert len(arrows) == len(list_tasks())  # every registered task has one
    for t in arrows:
        assert ">" not in t.alias and t.alias == t.name.replace("->", "-to-")
        assert get_task(t.alias) is t and get_task(t.name) is t
        assert resolve_instruction(task=t.alias) == t.instruction
    assert get_task("image+text-to-image").name == "image+text->image"
    enc = ToyEncoder()
    np.testing.assert_array_equal(enc.encode_queries(["a red car"], task="text-to-image"),
                                  enc.encode_queries(["a red car"], task="text->image"))
    with pytest.raises(InputError, match="unknown task 'text-to-imag'"):
        get_task("text-to-imag")
