"""``mmembed train`` end to end on a tiny dataset drawn here (coloured shapes + captions), with the shipped
mmembed-mini: the loss falls, the instruction learns to pick the asked modality, the output reloads to the
same vectors, an interrupted run resumes to the same weights, mining respects false negatives, and bad
inputs fail with clear errors. A few seconds of training per run on a CPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

import mmembed
from mmembed.cli import app
from mmembed.encoders.mini import MiniEncoder, load_default
from mmembed.errors import ImageLoadError
from mmembed.train.backends import MiniBackend, TrainingError
from mmembed.train.dispatch import backend_for
from mmembed.train.finetune import (
    FinetuneConfig,
    Finetuner,
    build_training_data,
    finetune,
)
from mmembed.train.pairs import read_pairs, read_pool

COLORS = ("red", "blue", "green", "gold")
SHAPES = ("circle", "square")
T2I = "Retrieve an image that matches the given caption."
T2T = "Retrieve passages that are relevant to the given text."


def _draw(color: str, shape: str, variant: int) -> Image.Image:
    img = Image.new("RGB", (64, 64), "white")
    d = ImageDraw.Draw(img)
    box = (6 + 6 * variant, 6 + 3 * variant, 58 - 6 * variant, 58 - 3 * variant)
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=color)
    return img


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """16 images of 8 concepts; text->image and text->text pairs; the captions in the pool as text documents."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "img").mkdir()
    pairs, pool = [], []
    for c in COLORS:
        for s in SHAPES:
            concept = f"{c}-{s}"
            for v in range(2):
                name = f"img/{concept}-{v}.png"
                _draw(c, s, v).save(root / name)
                pairs.append({"query": f"a {c} {s}", "positive": {"image": name}, "task": "text->image",
                              "concept": concept})
            pairs.append({"query": f"{s} painted {c}", "positive": f"a {c} {s}", "task": "text->text",
                          "concept": concept})
            pool.append({"text": f"a {c} {s}", "concept": concept})
    (root / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    (root / "pool.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pool))
    return {"root": root, "pairs": read_pairs(root / "pairs.jsonl"), "pool": read_pool(root / "pool.jsonl"),
            "cache": root / "text-cache.sqlite"}


def _cfg(**kw: Any) -> FinetuneConfig:
    base: dict[str, Any] = dict(stages=(1, 2), epochs=6, batch_size=8, lr=3e-3, warmup_steps=2, top_k=12,
                                hard_negatives=3)
    base.update(kw)
    return FinetuneConfig(**base)


def _run(tiny: dict[str, Any], out: Path, enc: MiniEncoder | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    cfg = kw.pop("config", None) or _cfg()
    return finetune(tiny["pairs"], enc or load_default(adapters=False), out, pool=tiny["pool"], config=cfg,
                    text_cache=tiny["cache"], progress=False, log=lambda _m: None, **kw)


def _modality_at_1(enc: Any, tiny: dict[str, Any]) -> float:
    """Share of text->image training queries whose top-1 in {images, caption texts} is an image."""
    root = tiny["root"]
    images = sorted((root / "img").glob("*.png"))
    texts = [f"a {c} {s}" for c in COLORS for s in SHAPES]
    docs = enc.encode_documents([*images, *texts])
    q = enc.encode_queries(texts, instruction=T2I)
    return float(np.mean((q @ docs.T).argmax(axis=1) < len(images)))


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _plain_image_search(enc: Any, tiny: dict[str, Any]) -> float:
    """Share of captions whose top-1 image, asked *without* an instruction over the images alone, is one of
    its own drawings (plain search must keep working after fine-tuning)."""
    images = sorted((tiny["root"] / "img").glob("*.png"))
    texts = [f"a {c} {s}" for c in COLORS for s in SHAPES]
    top = (enc.encode_queries(texts) @ enc.encode_documents(images).T).argmax(axis=1)
    return float(np.mean([images[j].name.startswith(t[2:].replace(" ", "-")) for t, j in zip(texts, top)]))


@pytest.fixture(scope="module")
def trained(tiny: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("run") / "model"
    enc = load_default(adapters=False)
    before = _modality_at_1(enc, tiny)
    plain_before = _plain_image_search(enc, tiny)
    result = _run(tiny, out, enc)
    return {"out": out, "enc": enc, "result": result, "before": before, "plain_before": plain_before}


# ---- end to end --------------------------------------------------------------------------------------------
def test_loss_falls_and_the_instruction_learns_the_modality(trained: dict[str, Any], tiny: dict[str, Any]) -> None:
    res = trained["result"]
    assert [s.stage for s in res.stages] == [1, 2]
    for s in res.stages:
        assert s.loss_last_epoch < s.loss_first_epoch, s
    assert [(h["stage"], h["epoch"]) for h in res.epoch_losses] == [(s, e) for s in (1, 2) for e in range(1, 7)]
    # the shipped model answers a text->image request with the identical caption text; after training,
    # the instruction makes it return images
    assert trained["before"] < 0.2
    after = mmembed.load_encoder(str(trained["out"]))
    assert _modality_at_1(after, tiny) >= 0.9
    # ... while a query without instruction still finds its own drawings among images as well as before
    assert _plain_image_search(after, tiny) >= trained["plain_before"] - 1e-9
    # stage 2 mined every query with the stage-1 model (what it found is checked in the mining test below)
    mining = res.stages[1].mining
    assert mining is not None and mining["queries"] == 24 and mining["right_modality_negatives"] > 0


def test_output_directory_reloads_to_the_same_vectors(trained: dict[str, Any], tiny: dict[str, Any]) -> None:
    out: Path = trained["out"]
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "mmembed_config.json", "model.safetensors",
                                                      "training_summary.json"]
    back = mmembed.load_encoder(str(out))
    assert isinstance(back, MiniEncoder) and back.name.startswith("mmembed-mini-v3-ft-")
    enc: MiniEncoder = trained["enc"]  # the encoder object trained in memory
    items = ["a red circle", tiny["root"] / "img" / "blue-square-0.png",
             {"text": "gold", "image": tiny["root"] / "img" / "gold-circle-1.png"}]
    np.testing.assert_allclose(back.encode_queries(items, instruction=T2I), enc.encode_queries(items, instruction=T2I),
                               atol=1e-6)
    np.testing.assert_allclose(back.encode_documents(items), enc.encode_documents(items), atol=1e-6)
    assert not back.model.query_adapter.is_identity() and not back.model.doc_adapter.is_identity()
    # the frozen image tower is untouched (only adapters + temperature were trained)
    base = load_default(adapters=False).model.image_tower.state_dict()
    for k, v in back.model.image_tower.state_dict().items():
        assert torch.equal(v, base[k]), k
    card = (out / "MODEL_CARD.md").read_text()
    assert "modality-aware hard negatives" in card and "| 2 |" in card
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["data"]["by_task"] == {"text->image": 16, "text->text": 8}
    assert summary["trained"]["trained"] == ["adapters", "temperature"]


def test_training_path_embeds_exactly_like_the_encoder(tiny: dict[str, Any]) -> None:
    """What training optimises is what the encoder serves (same fusion, adapters and normalisation)."""
    enc = load_default(adapters=False)
    torch.manual_seed(1)
    with torch.no_grad():  # non-identity adapters, so the check covers them
        for p in [*enc.model.query_adapter.parameters(), *enc.model.doc_adapter.parameters()]:
            p.normal_(0, 0.05)
    backend = MiniBackend(enc, bf16=False, text_cache=tiny["cache"])
    root = tiny["root"]
    interleaved = read_pool(_write_jsonl(root / "mixed-pool.jsonl", [
        {"text": "a red circle", "image": "img/red-circle-0.png"},
        {"text": "two shapes", "images": ["img/blue-square-0.png", "img/gold-circle-1.png"]}]))
    data = build_training_data(tiny["pairs"], [*tiny["pool"], *interleaved])
    backend.prepare(data.items, data.where, data.instructions, lambda _m: None)
    backend.train(False)
    with torch.no_grad():
        qi = torch.arange(data.n_pairs)
        instr = torch.tensor([d[0] for d in data.pair_instructions])
        q = backend.embed(qi, instr, is_query=True).numpy()
        docs = backend.embed(torch.arange(data.n_pool) + data.n_pairs, None, is_query=False).numpy()
    texts = [p.query.text for p in tiny["pairs"]]
    expected_q = np.concatenate([
        enc.encode_queries([t], instruction=data.instructions[i]) for t, i in zip(texts, instr.tolist())])
    np.testing.assert_allclose(q, expected_q, atol=1e-5)
    np.testing.assert_allclose(docs, enc.encode_documents(data.items[data.n_pairs:]), atol=1e-5)
    # text-only documents keep the text tower's vectors; documents with an image pass the document adapter
    raw = backend.embed(torch.arange(data.n_pool) + data.n_pairs, None, is_query=False, adapt=False).numpy()
    is_text = np.array([data.modalities[m] == "text" for m in data.pool_modality])
    np.testing.assert_allclose(docs[is_text], raw[is_text], atol=1e-6)
    assert not np.allclose(docs[~is_text], raw[~is_text], atol=1e-3)
    assert {"image+text"} <= set(data.modalities)


def test_mining_excludes_false_negatives_and_takes_wrong_modality_above_the_positive(tiny: dict[str, Any],
                                                                                     tmp_path: Path) -> None:
    enc = load_default(adapters=False)
    backend = MiniBackend(enc, text_cache=tiny["cache"])
    data = build_training_data(tiny["pairs"], tiny["pool"])
    backend.prepare(data.items, data.where, data.instructions, lambda _m: None)
    cfg = _cfg(top_k=10)
    trainer = Finetuner(backend, data, cfg, tmp_path, fingerprint="x", log=lambda _m: None)
    mined = trainer.mine()
    q, p = trainer.embed_all()
    scores = q @ p.T
    t2i = [i for i in range(data.n_pairs) if data.target_modality(i) == "image"]
    for i in t2i:
        pos = int(data.positive[i])
        negs = mined.negatives[i]
        concept = data.pair_concept[i]
        for j, kind in zip(negs, mined.kinds[i]):
            # never the positive nor another image of the same concept
            assert j != pos
            assert not (data.pool_concept[j] == concept and data.modalities[data.pool_modality[j]] == "image")
            if kind == "wrong-modality":
                assert data.modalities[data.pool_modality[j]] == "text"
                assert scores[i, j] > scores[i, pos]
            else:
                assert data.modalities[data.pool_modality[j]] == "image"
        # the shipped model ranks the query's own caption (same concept, other modality) above its image:
        # exactly the negative the instruction must learn to overrule
        caption = next(j for j in range(data.n_pool) if data.pool_ids[j] and data.pool_concept[j] == concept
                       and data.modalities[data.pool_modality[j]] == "text")
        assert caption in negs
    assert mined.stats["queries_with_wrong_modality_above_positive"] == len(t2i)


# ---- resume ------------------------------------------------------------------------------------------------
class _Stop(Exception):
    pass


def test_resume_after_interruption_gives_the_same_weights(trained: dict[str, Any], tiny: dict[str, Any],
                                                          tmp_path: Path) -> None:
    reference = _weights(trained["out"])
    # Ctrl-C in the middle of a stage-2 epoch: the trainer checkpoints where it stopped
    out = tmp_path / "interrupted"

    def ctrl_c(info: dict[str, Any]) -> None:
        if info["stage"] == 2 and info["epoch"] == 2 and info["step"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tiny, out, on_step=ctrl_c)
    assert (out / "checkpoints" / "state.pt").is_file() and not (out / "model.safetensors").exists()
    with pytest.raises(TrainingError, match="interrupted run: pass --resume"):
        _run(tiny, out)
    _run(tiny, out, resume=True)
    resumed = _weights(out)
    assert resumed.keys() == reference.keys()
    for k in reference:
        torch.testing.assert_close(resumed[k], reference[k], rtol=0, atol=1e-6, msg=k)
    assert not (out / "checkpoints").exists()  # cleaned up after success

    # a crash (no chance to save) resumes from the last epoch checkpoint and still ends the same
    out2 = tmp_path / "crashed"

    def crash(info: dict[str, Any]) -> None:
        if info["stage"] == 1 and info["epoch"] == 3 and info["step"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        _run(tiny, out2, on_step=crash)
    _run(tiny, out2, resume=True)
    for k, v in _weights(out2).items():
        torch.testing.assert_close(v, reference[k], rtol=0, atol=1e-6, msg=k)


def test_resume_refuses_a_different_run(tiny: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "m"

    def stop(info: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tiny, out, on_step=stop)
    with pytest.raises(TrainingError, match="other data, options or base model"):
        _run(tiny, out, resume=True, config=_cfg(lr=1e-2))
    with pytest.raises(TrainingError, match="contradict"):
        _run(tiny, out, resume=True, overwrite=True)


# ---- what can be trained --------------------------------------------------------------------------------------
def test_image_tower_training_changes_weights_but_not_batchnorm_statistics(tiny: dict[str, Any],
                                                                           tmp_path: Path) -> None:
    enc = load_default(adapters=False)
    base = {k: v.clone() for k, v in enc.model.image_tower.state_dict().items()}
    res = _run(tiny, tmp_path / "img", enc, config=_cfg(stages=(1,), epochs=1), parts=("adapters", "image-tower"))
    assert np.isfinite(res.stages[0].loss_last_epoch)
    after = mmembed.load_encoder(str(tmp_path / "img")).model.image_tower.state_dict()
    changed = [k for k in base if "running" not in k and "num_batches" not in k and not torch.equal(base[k], after[k])]
    assert changed, "the image tower did not train"
    for k in base:
        if "running" in k or "num_batches" in k:
            assert torch.equal(base[k], after[k]), k
    summary = json.loads((tmp_path / "img" / "training_summary.json").read_text())
    assert summary["trained"]["trained"] == ["adapters", "image-tower"]


def test_unsupported_backends_and_options_are_refused_clearly(toy_encoder: Any, tiny: dict[str, Any]) -> None:
    with pytest.raises(TrainingError, match=r"cannot fine-tune the ToyEncoder backend yet.*docs/training\.md"):
        backend_for(toy_encoder)
    with pytest.raises(TrainingError, match="unknown trainable part"):
        MiniBackend(load_default(adapters=False), parts=("adapters", "text-tower"))
    with pytest.raises(TrainingError, match="stages must be"):
        FinetuneConfig(stages=(2, 1))
    for bad, message in [({"plain_fraction": 1.0}, "plain_fraction"), ({"anchor_weight": -1}, "anchor_weight"),
                         ({"modality_margin": -0.1}, "modality_margin"), ({"batch_size": 1}, "batch_size"),
                         ({"stage2_init": "stage2"}, "stage2_init"), ({"right_ranks": (9, 3)}, "right_ranks")]:
        with pytest.raises((TrainingError, ValueError), match=message):
            FinetuneConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(TrainingError, match="stage 3 .* needs text->text pairs"):
        t2i_only = [p for p in tiny["pairs"] if p.positive.modality == "image"]
        finetune(t2i_only, load_default(adapters=False), tiny["root"] / "s3", config=_cfg(stages=(3,), epochs=1),
                 text_cache=tiny["cache"], progress=False, log=lambda _m: None)


def test_unreadable_image_names_the_line(tmp_path: Path, tiny: dict[str, Any]) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "pairs.jsonl").write_text(
        json.dumps({"query": "a", "positive": "b"}) + "\n"
        + json.dumps({"query": "c", "positive": {"image": "broken.png"}}) + "\n")
    with pytest.raises(ImageLoadError, match=r"pairs\.jsonl line 2 'positive'"):
        finetune(read_pairs(tmp_path / "pairs.jsonl"), load_default(adapters=False), tmp_path / "out", text_cache=tiny["cache"],
                 config=_cfg(stages=(1,), epochs=1), progress=False, log=lambda _m: None)


# ---- the command line ---------------------------------------------------------------------------------------
def test_cli_trains_and_reports_bad_records(tiny: dict[str, Any], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMEMBED_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "a", "positive": "b"}\n{"query": "a", "positive": "b"}\n{"query": "a"}\n')
    res = runner.invoke(app, ["train", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "bad.jsonl line 3: 'positive' is missing" in res.output
    res = runner.invoke(app, ["train", str(tiny["root"] / "pairs.jsonl"), "--out", str(tmp_path / "x"),
                              "--stages", "1,x"])
    assert res.exit_code == 2 and "--stages" in res.output
    out = tmp_path / "cli-model"
    res = runner.invoke(app, ["train", str(tiny["root"] / "pairs.jsonl"), "--pool", str(tiny["root"] / "pool.jsonl"),
                              "--out", str(out), "--stages", "1", "--epochs", "1", "--batch-size", "8"])
    assert res.exit_code == 0, res.output
    assert "fine-tuned model written to" in res.output
    assert isinstance(mmembed.load_encoder(str(out)), MiniEncoder)
    card = (out / "MODEL_CARD.md").read_text()
    assert "mmembed train pairs.jsonl --out cli-model --pool pool.jsonl --stages 1 --epochs 1 --batch-size 8" in card
    assert str(tmp_path) not in card  # no machine paths in the card
    # running it again without --overwrite refuses to clobber the model
    res = runner.invoke(app, ["train", str(tiny["root"] / "pairs.jsonl"), "--out", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output


def test_cli_eval_writes_the_before_after_table_into_the_card(tiny: dict[str, Any], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`--eval` scores the base and the fine-tuned model with the eval harness (here a mixed pool made of the
    tiny images and captions, registered like tuxpaint-mixed) and puts the table in the model card."""
    from types import SimpleNamespace

    from mmembed.eval.datasets import DATASETS
    from mmembed.eval.modality import tuxpaint_mixed

    images = sorted((tiny["root"] / "img").glob("*-0.png"))
    stamps = [SimpleNamespace(id=p.stem, image_path=p, caption="a " + p.stem[:-2].replace("-", " "),
                              translations={"de": "ein " + p.stem[:-2].replace("-", " ") + " (de)"}) for p in images]
    monkeypatch.setitem(DATASETS, "tiny-mixed", lambda limit=None, seed=0: tuxpaint_mixed(stamps=stamps,
                                                                                          languages=("de",)))
    monkeypatch.setenv("MMEMBED_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "evaluated"
    res = CliRunner().invoke(app, ["train", str(tiny["root"] / "pairs.jsonl"), "--pool", str(tiny["root"] / "pool.jsonl"),
                                   "--out", str(out), "--encoder", "mmembed-mini-towers",
                                   "--batch-size", "8", "--epochs", "6", "--lr", "0.003",
                                   "--top-k", "12", "--hard-negatives", "3", "--eval", "tiny-mixed"])
    assert res.exit_code == 0, res.output
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Evaluation" in card and "| tuxpaint-mixed | text->image | 8 | 16 |" in card
    summary = json.loads((out / "training_summary.json").read_text())
    before = {r["subset"]: r["metrics"] for r in summary["evaluation"]["before"]}
    after = {r["subset"]: r["metrics"] for r in summary["evaluation"]["after"]}
    assert before["text->image"]["ModAcc@1"] == 0.0 and after["text->image"]["ModAcc@1"] >= 0.9
    # (8 pairs per kind are too few to judge text->text); each set is also scored without the instruction
    assert set(after) == {"text->image", "text->text", "image->text", "text->image (no instruction)",
                          "text->text (no instruction)", "image->text (no instruction)"}
    assert "ModAcc@1 (mmembed-mini-towers)" in res.output and "ModAcc@1 (fine-tuned)" in res.output


def test_a_pair_with_an_image_and_text_positive_competes_across_modalities(tmp_path: Path) -> None:
    """The rule that keeps pages and screenshots findable by plain text queries: a row whose positive is an
    image + text document competes against every candidate, with no modality margin, and the same concept in
    any modality is not a negative; an image-only positive keeps the modality rules."""
    from mmembed.train.finetune import batch_mask

    Image.new("RGB", (8, 8), "green").save(tmp_path / "f.png")
    pairs = _write_jsonl(tmp_path / "pairs.jsonl", [
        {"query": "frog", "positive": {"image": "f.png"}, "task": "text->image", "concept": "frog"},
        {"query": "frog", "positive": {"text": "A frog.", "image": "f.png"}, "concept": "frog", "id": "cap:f"},
        {"query": "Apfel", "positive": "apple", "task": "text->text", "concept": "apple"}])
    pool = _write_jsonl(tmp_path / "pool.jsonl", [{"text": "frog", "concept": "frog", "id": "t:frog"}])
    d = build_training_data(read_pairs(pairs), read_pool(pool))
    assert d.mixed_positive(np.arange(3)).tolist() == [False, True, False]
    rows = np.arange(3)
    frog_text = d.n_pool - 1
    cols = np.array([*d.positive.tolist(), frog_text])  # image, image+text, "apple", "frog"
    mask, margin = batch_mask(d, rows, cols, np.zeros(3, dtype=bool), 0.2)
    # image + text positive: the drawing and the caption of its own concept are right answers, "apple" competes
    assert mask[1].tolist() == [True, True, False, True] and margin is not None and not margin[1].any()
    # image positive, instructed: the frog caption and the captioned drawing compete, a margin below it
    assert mask[0].tolist() == [True, False, False, False] and margin[0].tolist() == [0.0, 0.2, 0.2, 0.2]
    # asked without the instruction: only images compete for the image row; the captioned row still sees all
    mask, _ = batch_mask(d, rows, cols, np.ones(3, dtype=bool), 0.2)
    assert mask[0].tolist() == [True, True, True, True] and mask[1].tolist() == [True, True, False, True]
