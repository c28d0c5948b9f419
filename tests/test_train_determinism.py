"""Fine-tuning is bit-for-bit repeatable at a fixed thread count.

Two runs of ``python -m mmembed.train.modality`` on identical data and 2 threads used to end 8-10 % apart
(benchmarks/results/reproduce.json): the backward pass of gathering a batch's repeated document columns
(``docs_u[inverse]``) accumulates with ``index_put_(accumulate=True)``, which on a CPU adds from several
threads in arrival order. ``finetune`` therefore runs with ``torch.use_deterministic_algorithms(True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mmembed.encoders.mini import load_default
from mmembed.train.finetune import FinetuneConfig, finetune
from mmembed.train.pairs import read_pairs


def _gather_grad(cols: torch.Tensor, inverse: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    x = cols.clone().requires_grad_(True)
    (x[inverse] * weights).sum().backward()
    assert x.grad is not None
    return x.grad


def test_the_gather_backward_of_the_training_step_is_repeatable_in_deterministic_mode() -> None:
    """The recipe's shape: 256 queries + 4 mined negatives each over ~900 distinct columns of 384-d."""
    g = torch.Generator().manual_seed(0)
    uniq = torch.randn(900, 384, generator=g)
    inverse = torch.randint(0, 900, (256 * 5,), generator=g)
    weights = torch.randn(256 * 5, 384, generator=g)
    threads = torch.get_num_threads()
    before = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    try:
        grads = [_gather_grad(uniq, inverse, weights) for _ in range(8)]
    finally:
        torch.use_deterministic_algorithms(before)
        torch.set_num_threads(threads)
    for other in grads[1:]:
        assert torch.equal(grads[0], other)
    # and it is the right gradient: each column receives the sum of the rows that gathered it
    expected = torch.zeros_like(uniq).index_add_(0, inverse, weights)
    torch.testing.assert_close(grads[0], expected)


def test_finetune_trains_with_deterministic_kernels_and_restores_the_setting(tmp_path: Path) -> None:
    rows = [{"query": f"name {i}", "positive": f"the thing number {i}", "task": "text->text"} for i in range(12)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen: list[bool] = []

    def on_step(_info: dict[str, Any]) -> None:
        seen.append(torch.are_deterministic_algorithms_enabled())

    assert not torch.are_deterministic_algorithms_enabled()
    finetune(read_pairs(path), load_default(adapters=False), tmp_path / "out",
             config=FinetuneConfig(stages=(1,), epochs=1, batch_size=4, warmup_steps=1),
             text_cache=tmp_path / "cache.sqlite", progress=False, log=lambda _m: None, on_step=on_step)
    assert seen and all(seen)
    assert not torch.are_deterministic_algorithms_enabled()  # the caller's setting is back
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_saving_the_same_weights_gives_the_same_bytes(tmp_path: Path) -> None:
    """safetensors writes its metadata map in hash order: with two keys, identical weights were saved as
    different files about every other time (two identical trainings had different sha256)."""
    import hashlib

    model = load_default(adapters=False).model
    digests = set()
    for i in range(10):
        model.save(tmp_path / f"m{i}", dtype=torch.float16)
        digests.add(hashlib.sha256((tmp_path / f"m{i}" / "model.safetensors").read_bytes()).hexdigest())
    assert len(digests) == 1
