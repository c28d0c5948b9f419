"""``mmembed train`` on transformers CLIP and SigLIP models: LoRA adapters through peft (mmembed.train.lora).

Tiny random CLIPModel / SiglipModel directories are built in code (the helper of test_clip_backends.py) and
trained on coloured shapes drawn here with captions; the pool holds the captions as text documents. Checked:
the loss falls, only the LoRA weights and the temperature change, the merged output directory reloads as a
plain hf-clip model (no peft needed) with the trained model's vectors, the backend embeds exactly as the
encoder serves, a resumed run ends with the same weights, and unsupported options fail clearly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

import mmembed
from mmembed.cli import app
from mmembed.encoders.clip import HFClipEncoder
from mmembed.train.backends import TrainingError
from mmembed.train.dispatch import backend_for
from mmembed.train.finetune import FinetuneConfig, build_training_data, finetune
from mmembed.train.lora import FINETUNE_FILE, HFClipBackend
from mmembed.train.pairs import read_pairs, read_pool
from test_clip_backends import build_hf

# words the tiny tokenizer of test_clip_backends knows: colours, and two nouns standing for the two shapes
COLORS = ("red", "green", "blue")
SHAPES = {"circle": "apple", "square": "house"}
T2I = "retrieve an image that matches the caption"


def _draw(color: str, shape: str, variant: int) -> Image.Image:
    img = Image.new("RGB", (48, 48), "white")
    d = ImageDraw.Draw(img)
    box = (4 + 5 * variant, 4 + 3 * variant, 44 - 5 * variant, 44 - 3 * variant)
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=color)
    return img


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """12 drawings of 6 concepts; text->image and text->text pairs; the captions as pool text documents."""
    root = tmp_path_factory.mktemp("tiny-lora")
    (root / "img").mkdir()
    pairs, pool = [], []
    for c in COLORS:
        for shape, noun in SHAPES.items():
            concept = f"{c}-{shape}"
            for v in range(2):
                name = f"img/{concept}-{v}.png"
                _draw(c, shape, v).save(root / name)
                pairs.append({"query": f"a {c} {noun}", "positive": {"image": name}, "instruction": T2I,
                              "concept": concept})
            pairs.append({"query": f"the {noun} drawing of {c}", "positive": f"a {c} {noun}", "task": "text->text",
                          "concept": concept})
            pool.append({"text": f"a {c} {noun}", "concept": concept})
    (root / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    (root / "pool.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pool))
    images = sorted((root / "img").glob("*.png"))
    texts = [f"a {c} {n}" for c in COLORS for n in SHAPES.values()]
    return {"root": root, "pairs": read_pairs(root / "pairs.jsonl"), "pool": read_pool(root / "pool.jsonl"),
            "images": images, "texts": texts}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-models")
    dirs = {kind: build_hf(kind, root / f"tiny-{kind}", seed=3) for kind in ("clip", "siglip", "siglip2")}
    # a random SiglipModel starts at logit scale 0 (the clamp's floor); set the published SigLIP init
    # (scale log 10, bias -10) so the temperature has room to move both ways
    from transformers import SiglipModel

    model = SiglipModel.from_pretrained(dirs["siglip"])
    with torch.no_grad():
        model.logit_scale.fill_(float(np.log(10.0)))
        model.logit_bias.fill_(-10.0)
    model.save_pretrained(dirs["siglip"])
    return dirs


def _cfg(**kw: Any) -> FinetuneConfig:
    base: dict[str, Any] = dict(stages=(1, 2), epochs=4, batch_size=8, lr=1e-2, warmup_steps=2, top_k=8,
                                hard_negatives=2)
    base.update(kw)
    return FinetuneConfig(**base)


def _run(tiny: dict[str, Any], enc: Any, out: Path, **kw: Any):  # type: ignore[no-untyped-def]
    cfg = kw.pop("config", None) or _cfg()
    return finetune(tiny["pairs"], enc, out, pool=tiny["pool"], config=cfg, text_cache=False, progress=False,
                    log=lambda _m: None, **kw)


def _vectors(enc: Any, tiny: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Documents (images, captions, an image+text item), instructed queries and plain queries."""
    docs = enc.encode_documents([*tiny["images"], *tiny["texts"],
                                 [tiny["texts"][0], mmembed.image(tiny["images"][0])]])
    return docs, enc.encode_queries(tiny["texts"], instruction=T2I), enc.encode_queries(tiny["texts"])


@pytest.fixture(scope="module", params=["clip", "siglip"])
def trained(request: pytest.FixtureRequest, tiny: dict[str, Any], model_dirs: dict[str, Path],
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    kind = request.param
    ref = mmembed.load_encoder(str(model_dirs[kind]))
    enc = mmembed.load_encoder(str(model_dirs[kind]))
    out = tmp_path_factory.mktemp(f"run-{kind}") / "model"
    result = _run(tiny, enc, out)
    return {"kind": kind, "ref": ref, "enc": enc, "out": out, "result": result}


# ---- training ---------------------------------------------------------------------------------------------
def test_loss_falls_and_only_lora_and_temperature_change(trained: dict[str, Any]) -> None:
    res = trained["result"]
    for stage in res.stages:
        assert stage.loss_last_epoch < stage.loss_first_epoch - 0.05, (trained["kind"], stage)
    assert res.trained["backend"] == "hf-clip-lora" and res.trained["trained"] == ["adapters", "temperature"]
    assert res.trained["parameters"]["lora_text"] > 0 and res.trained["parameters"]["lora_vision"] > 0
    base = dict(trained["ref"].model.named_parameters())
    lora_b = []
    for name, p in trained["enc"].model.named_parameters():
        if "lora_" in name:
            if "lora_B" in name:
                lora_b.append(float(p.detach().abs().max()))
            continue
        key = name.replace(".base_layer", "")
        if key == "logit_scale":
            assert not torch.equal(p, base[key]), "the temperature did not train"
        elif key == "logit_bias":  # SigLIP: no gradient under a softmax loss, kept as it was
            assert torch.equal(p, base[key]) and float(p) == -10.0
        else:
            assert torch.equal(p, base[key]), f"frozen weight {key} changed"
    assert lora_b and max(lora_b) > 0, "the LoRA weights did not train"
    # adapters sit on the self-attention projections of both towers, never on SigLIP's pooling head
    names = [n for n, _ in trained["enc"].model.named_modules() if n.endswith("lora_A")]
    assert any(n.startswith("text_model.") for n in names) and any(n.startswith("vision_model.") for n in names)
    assert all(".self_attn." in n for n in names) and not any(".head." in n for n in names)


def test_output_reloads_as_plain_hf_clip_with_the_trained_vectors(trained: dict[str, Any],
                                                                   tiny: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    out = trained["out"]
    loaded = mmembed.load_encoder(str(out))
    assert isinstance(loaded, HFClipEncoder) and loaded.backend == "hf-clip"
    keys = list(load_file(str(out / "model.safetensors")))
    assert keys and not any("lora" in k or "base_layer" in k for k in keys)
    assert not (out / "adapter_config.json").exists()
    assert not any("lora" in n for n, _ in loaded.model.named_parameters())
    assert loaded.pad_to_max_length == trained["enc"].pad_to_max_length
    assert loaded.max_text_tokens == trained["enc"].max_text_tokens
    info = json.loads((out / FINETUNE_FILE).read_text())
    assert info["lora"]["r"] == 8 and info["lora"]["merged"] is True
    card = (out / "MODEL_CARD.md").read_text()
    assert "hf-clip-lora" in card and "lora" in card
    after = _vectors(loaded, tiny)
    for got, want in zip(after, _vectors(trained["enc"], tiny)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    before = _vectors(trained["ref"], tiny)
    assert not np.allclose(before[1], after[1], atol=1e-3), "training changed nothing"


def test_the_saved_model_needs_no_peft(trained: dict[str, Any], tiny: dict[str, Any]) -> None:
    script = (
        "import sys, json; sys.modules['peft'] = None\n"
        "import mmembed\n"
        f"enc = mmembed.load_encoder({str(trained['out'])!r})\n"
        f"v = enc.encode_documents([{tiny['texts'][0]!r}])\n"
        "print(json.dumps([enc.backend, 'peft' in sys.modules and sys.modules['peft'] is not None, "
        "v[0].tolist()]))\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    backend, has_peft, vec = json.loads(res.stdout.strip().splitlines()[-1])
    assert backend == "hf-clip" and not has_peft
    np.testing.assert_allclose(vec, trained["enc"].encode_documents([tiny["texts"][0]])[0], atol=1e-5)


# ---- the backend embeds as the encoder serves ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["clip", "siglip", "siglip2"])
def test_backend_embeds_like_the_encoder_and_adapt_false_is_the_base_model(
        kind: str, tiny: dict[str, Any], model_dirs: dict[str, Path]) -> None:
    ref = mmembed.load_encoder(str(model_dirs[kind]))
    enc = mmembed.load_encoder(str(model_dirs[kind]))
    backend = HFClipBackend(enc)
    data = build_training_data(tiny["pairs"], tiny["pool"])
    backend.prepare(data.items, data.where, data.instructions, lambda _m: None)
    # push the adapters away from their zero start so "adapted" and "base" differ
    with torch.no_grad():
        for name, p in enc.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.2)
    q_idx = torch.arange(data.n_pairs)
    instr = torch.tensor([data.pair_instructions[i][0] if data.pair_instructions[i] else -1
                          for i in range(data.n_pairs)])
    assert T2I in data.instructions and -1 not in instr.tolist()
    d_idx = torch.arange(data.n_pairs, data.n_pairs + data.n_pool)
    backend.train(False)
    queries = [data.items[i] for i in range(data.n_pairs)]
    texts_of = [data.instructions[j] if j >= 0 else None for j in instr.tolist()]
    want_q = np.stack([enc.encode_queries([q], instruction=t)[0] for q, t in zip(queries, texts_of)])
    np.testing.assert_allclose(backend.embed(q_idx, instr, is_query=True).numpy(), want_q, atol=1e-5)
    docs = [data.items[i] for i in d_idx.tolist()]
    np.testing.assert_allclose(backend.embed(d_idx, None, is_query=False).numpy(), enc.encode_documents(docs),
                               atol=1e-5)
    # adapt=False: the frozen base model (the anchor), even in training mode and without gradients
    backend.train(True)
    base = backend.embed(d_idx, None, is_query=False, adapt=False)
    assert not base.requires_grad
    np.testing.assert_allclose(base.numpy(), ref.encode_documents(docs), atol=1e-5)
    np.testing.assert_allclose(backend.embed(q_idx, instr, is_query=True, adapt=False).numpy(),
                               np.stack([ref.encode_queries([q], instruction=t)[0] for q, t in zip(queries, texts_of)]),
                               atol=1e-5)
    adapted = backend.embed(d_idx, None, is_query=False)
    assert adapted.requires_grad and not np.allclose(adapted.detach().numpy(), base.numpy(), atol=1e-3)


# ---- resume ----------------------------------------------------------------------------------------------------
def test_resume_after_interruption_ends_with_the_same_weights(tiny: dict[str, Any], model_dirs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    from safetensors.torch import load_file

    cfg = _cfg(epochs=2)
    full = tmp_path / "full"
    _run(tiny, mmembed.load_encoder(str(model_dirs["clip"])), full, config=cfg)

    def stop(info: dict[str, Any]) -> None:
        if info["stage"] == 2 and info["step"] == 1:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, mmembed.load_encoder(str(model_dirs["clip"])), part, config=cfg, on_step=stop)
    assert (part / "checkpoints" / "state.pt").is_file()
    state = torch.load(part / "checkpoints" / "state.pt", weights_only=False)
    assert state["model"] and all("lora_" in k or k == "logit_scale" for k in state["model"])
    _run(tiny, mmembed.load_encoder(str(model_dirs["clip"])), part, config=cfg, resume=True)
    a, b = load_file(str(full / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # other LoRA options are another run: resuming with them is refused
    with pytest.raises(TrainingError, match="other data, options or base model"):
        (part / "checkpoints").mkdir(exist_ok=True)
        torch.save(state, part / "checkpoints" / "state.pt")
        _run(tiny, mmembed.load_encoder(str(model_dirs["clip"])), part, config=cfg, resume=True, lora_r=4)


# ---- refusals ----------------------------------------------------------------------------------------------
def test_unsupported_options_and_backends_are_refused(model_dirs: dict[str, Path], tiny: dict[str, Any],
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    enc = mmembed.load_encoder(str(model_dirs["clip"]))
    with pytest.raises(TrainingError, match="image-tower.*mmembed-mini only"):
        backend_for(enc, parts=("adapters", "image-tower"))
    with pytest.raises(TrainingError, match="unknown trainable part"):
        backend_for(enc, parts=("text-tower",))
    with pytest.raises(TrainingError, match="--image-lr only apply to mmembed-mini"):
        backend_for(enc, parts=("adapters",), mini_only=["--image-lr"])
    with pytest.raises(TrainingError, match="rank must be >= 1"):
        HFClipBackend(enc, lora_r=0)
    assert not any("lora" in n for n, _ in enc.model.named_parameters()), "a refused backend touched the model"

    class OpenClipEncoder:  # dispatch is by class name: the refusal text for open_clip
        pass

    class MMEmbedEncoder:
        pass

    with pytest.raises(TrainingError, match="open_clip backend yet.*transformers CLIP directory"):
        backend_for(OpenClipEncoder())
    with pytest.raises(TrainingError, match="MM-Embed.*needs a GPU.*not built or tested"):
        backend_for(MMEmbedEncoder())
    from mmembed.encoders.mini import load_default

    with pytest.raises(TrainingError, match="--lora-r configure LoRA"):
        backend_for(load_default(adapters=False), lora_r=4)
    # without peft: a clear message naming the extra
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(TrainingError, match=r'pip install "mmembed\[train\]"'):
        backend_for(enc)
    monkeypatch.undo()
    # and through the CLI, before any work is done
    res = CliRunner().invoke(app, ["train", str(tiny["root"] / "pairs.jsonl"), "--encoder", str(model_dirs["clip"]),
                                   "--out", str(tmp_path / "x"), "--image-lr", "1e-3"])
    assert res.exit_code == 2 and "--image-lr only apply to mmembed-mini" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["train", str(tiny["root"] / "pairs.jsonl"), "--encoder", str(model_dirs["clip"]),
                                   "--out", str(tmp_path / "y"), "--train", "image-tower"])
    assert res.exit_code == 2 and "mmembed-mini only" in " ".join(res.output.split())


# ---- the CLI end to end ------------------------------------------------------------------------------------------
def test_cli_trains_a_clip_directory(tiny: dict[str, Any], model_dirs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli-model"
    res = CliRunner().invoke(app, ["train", str(tiny["root"] / "pairs.jsonl"), "--pool",
                                   str(tiny["root"] / "pool.jsonl"), "--encoder", str(model_dirs["siglip"]),
                                   "--out", str(out), "--epochs", "2", "--batch-size", "8", "--lora-r", "4",
                                   "--lora-alpha", "8"])
    assert res.exit_code == 0, res.output
    enc = mmembed.load_encoder(str(out))
    assert isinstance(enc, HFClipEncoder)
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["trained"]["lora"] == {"r": 4, "alpha": 8.0, "dropout": 0.0}
    assert "--lora-r 4" in summary["command"] and not (out / "checkpoints").exists()
    card = (out / "MODEL_CARD.md").read_text()
    assert "(LoRA r=4, alpha=8, dropout 0)" in card and "image tower" not in card.split("## Command")[0].lower()
    v = enc.encode_queries(tiny["texts"], instruction=T2I)
    assert v.shape == (len(tiny["texts"]), enc.dim) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


def test_refused_options_fail_before_any_evaluation(tiny: dict[str, Any], model_dirs: dict[str, Path],
                                                   tmp_path: Path) -> None:
    """With --eval, a mini-only option is refused before the (slow) base-model evaluation starts."""
    res = CliRunner().invoke(app, ["train", str(tiny["root"] / "pairs.jsonl"), "--encoder", str(model_dirs["clip"]),
                                   "--out", str(tmp_path / "m"), "--image-lr", "0.1", "--eval", "no-such-set"])
    assert res.exit_code == 2 and "--image-lr" in res.output
    assert "evaluating" not in res.output and not (tmp_path / "m" / "model.safetensors").exists()
