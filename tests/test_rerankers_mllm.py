"""The MLLM yes/no reranker on a tiny randomly initialised LLaVA-NeXT built here (nothing downloaded).

The model has a tiny CLIP vision tower and a tiny Mistral language model; the tokenizer is a word-level
``tokenizers`` model with ``True``/``False`` tokens and the ``<image>`` token; the processor (anyres grid of
32 px tiles) is saved to a temporary directory and loaded back through :func:`mmembed.load_reranker`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmembed import coerce, load_reranker
from mmembed.pipeline import rerank
from mmembed.errors import ImageLoadError, ModelLoadError
from mmembed.rerankers.mllm import PROMPT, QUESTIONS, MLLMReranker, answer_token_ids


WORDS = ["<unk>", "<s>", "</s>", "<pad>", "<image>", "[INST]", "[/INST]", "True", "False", "Task", "Query",
         "Candidate", "Answer", "Does", "Is", "the", "candidate", "query", "image", "text", "match", "or", "a",
         "red", "apple", "green", "leaf", "blue", "sea", "find", "picture", ":", ".", "?", ",", "describe"]
IMAGE_ID = WORDS.index("<image>")
TEMPLATE = ("{% for m in messages %}[INST] {% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n"
            "{% else %}{{ c['text'] }}{% endif %}{% endfor %} [/INST]{% endfor %}")
PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]


def build_tiny_llava_next(directory: Path, seed: int = 0) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (CLIPVisionConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextProcessor, MistralConfig, PreTrainedTokenizerFast)
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.add_special_tokens(["<unk>", "<s>", "</s>", "<pad>", "<image>", "[INST]", "[/INST]"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                                 image_grid_pinpoints=PINPOINTS)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=32)
    text = MistralConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=3, bos_token_id=1, eos_token_id=2)
    config = LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_ID,
                             image_grid_pinpoints=PINPOINTS, vision_feature_select_strategy="default",
                             vision_feature_layer=-2)
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    with torch.no_grad():  # random init is nearly uniform; widen the logits so scores differ visibly
        model.get_output_embeddings().weight.mul_(20.0)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava_next(tmp_path_factory.mktemp("tiny-llava-next"))


@pytest.fixture(scope="module")
def reranker(llava_dir: Path) -> MLLMReranker:
    rr = load_reranker(llava_dir, device="cpu", dtype="float32")
    assert isinstance(rr, MLLMReranker)
    return rr


def _img(color: str, size: tuple[int, int]) -> Image.Image:
    img = Image.new("RGB", size, color)
    img.putpixel((0, 0), (7, 7, 7))  # not flat: the tiny model should see some structure
    return img


@pytest.fixture
def candidates() -> list[object]:
    return [
        "a red apple",
        {"image": _img("red", (32, 32))},
        {"image": _img("green", (40, 90)), "text": "a green leaf"},
        ["blue sea", {"type": "image", "image": _img("blue", (90, 40))}, "picture"],
        {"image": _img("yellow", (64, 64))},
    ]


def _image_runs(ids: list[int]) -> list[tuple[int, int]]:
    """(start, length) of each run of image tokens."""
    runs, start = [], None
    for i, t in enumerate(ids + [-1]):
        if t == IMAGE_ID and start is None:
            start = i
        elif t != IMAGE_ID and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


# ---- prompts ------------------------------------------------------------------------------------------
def test_prompt_has_instruction_query_candidate_and_question(reranker: MLLMReranker) -> None:
    q = coerce("a red apple")
    c = coerce({"image": _img("red", (32, 32))})
    text, images = reranker.build_prompt(q, c, "Find a picture.")
    assert text.startswith("[INST] ") and text.endswith(" [/INST]")
    body = PROMPT.format(task="Task: Find a picture.\n", query="a red apple", candidate="<image>",
                         question=QUESTIONS[("text", "image")])
    assert text == f"[INST] {body} [/INST]"
    assert len(images) == 1 and images[0].size == (32, 32)
    # without an instruction there is no task line; the question follows the pair's modalities
    text2, _ = reranker.build_prompt(coerce({"image": _img("red", (32, 32))}), coerce("a red apple"), None)
    assert "Task:" not in text2 and QUESTIONS[("image", "text")] in text2


def test_every_modality_pair_has_a_question() -> None:
    kinds = ("text", "image", "image+text")
    assert {(a, b) for a in kinds for b in kinds} == set(QUESTIONS)
    assert all(q.endswith("?") for q in QUESTIONS.values())


def test_images_stay_in_place_in_prompt_and_tokens(reranker: MLLMReranker) -> None:
    query = coerce([_img("blue", (32, 32)), "find a red apple"])
    cand = coerce(["red", _img("red", (32, 64)), "apple", _img("green", (64, 32)), "leaf"])
    text, images = reranker.build_prompt(query, cand, None)
    assert text.index("find a red apple") < text.index("Candidate:")
    cand_part = text[text.index("Candidate:"):]
    assert cand_part.index("red") < cand_part.index("<image>") < cand_part.index("apple")
    assert cand_part.index("apple") < cand_part.rindex("<image>") < cand_part.index("leaf")
    assert [im.size for im in images] == [(32, 32), (32, 64), (64, 32)]  # query image first, then in order

    enc = reranker.processor(text=[text], images=images, return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    runs = _image_runs(ids)
    assert len(runs) == 3
    vocab = {w: i for i, w in enumerate(WORDS)}
    pos = {w: [i for i, t in enumerate(ids) if t == vocab[w]] for w in ("find", "Candidate", "red", "apple", "leaf")}
    assert runs[0][0] + runs[0][1] <= pos["find"][0]                                 # query image before its text
    assert pos["Candidate"][0] < pos["red"][1] < runs[1][0]                          # "red" then image 2
    assert runs[1][0] + runs[1][1] <= pos["apple"][1] < runs[2][0]                   # "apple" between images
    assert runs[2][0] + runs[2][1] <= pos["leaf"][0]
    # anyres: the tall and the wide image expand to their own token counts, square to another
    expected = [reranker.processor._get_number_of_features(h, w, 32, 32) - 1
                for (w, h) in [im.size for im in images]]
    assert [n for _, n in runs] == expected
    assert expected[0] != expected[1]


def test_literal_image_token_in_text_is_not_an_image(reranker: MLLMReranker) -> None:
    cand = coerce("a red apple <image> leaf")
    text, images = reranker.build_prompt(coerce("apple"), cand, None)
    assert images == [] and "<image>" not in text
    (s,) = reranker.score("apple", [cand])
    assert 0.0 < s < 1.0


# ---- scores -------------------------------------------------------------------------------------------
def _expected_scores(rr: MLLMReranker, query: str, cands: list[object], instruction: str | None) -> list[float]:
    """Reference: one prompt at a time through the full model's logits (no batching, no shortcuts)."""
    t_id, f_id = WORDS.index("True"), WORDS.index("False")
    out = []
    for c in cands:
        item = coerce(c).load_images()
        text, images = rr.build_prompt(coerce(query), item, instruction)
        enc = rr.processor(text=[text], images=images or None, return_tensors="pt")
        with torch.no_grad():
            logits = rr.model(**enc).logits[0, -1]
        out.append(1.0 / (1.0 + math.exp(-(float(logits[t_id]) - float(logits[f_id])))))
    return out


def test_scores_are_p_true_from_next_token_logits(reranker: MLLMReranker, candidates: list[object]) -> None:
    scores = reranker.score("a red apple", candidates, instruction="Find a picture.", batch_size=8)
    expected = _expected_scores(reranker, "a red apple", candidates, "Find a picture.")
    assert all(0.0 < s < 1.0 for s in scores)
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len(set(round(s, 4) for s in scores)) > 1  # the random model does tell them apart
    ranked = rerank(reranker, "a red apple", candidates, instruction="Find a picture.")
    assert [r.index for r in ranked] == sorted(range(len(expected)), key=lambda i: -expected[i])


@pytest.mark.parametrize("side", ["right", "left"])
def test_batch_equals_single_with_padding(llava_dir: Path, candidates: list[object], side: str) -> None:
    rr = load_reranker(llava_dir, device="cpu", dtype="float32", padding_side=side)
    assert rr.tokenizer.padding_side == side
    batched = rr.score("a red apple", candidates, task="text->image", batch_size=len(candidates))
    single = rr.score("a red apple", candidates, task="text->image", batch_size=1)
    assert batched == pytest.approx(single, abs=1e-5)


def test_equal_answer_weights_give_one_half(llava_dir: Path, candidates: list[object]) -> None:
    rr = load_reranker(llava_dir, device="cpu", dtype="float32")
    head = rr.model.get_output_embeddings().weight
    with torch.no_grad():
        head[WORDS.index("False")] = head[WORDS.index("True")]
    assert rr.score("apple", candidates) == pytest.approx([0.5] * len(candidates), abs=1e-6)


def test_raising_the_true_logit_raises_the_score_by_exactly_that(llava_dir: Path) -> None:
    """Add 5 to l_True at one candidate's final hidden state: its log-odds move by exactly 5, ranking follows."""
    rr = load_reranker(llava_dir, device="cpu", dtype="float32")
    cands = ["a red apple", "a green leaf", "blue sea"]
    base = rr.score("apple", cands)
    prompt = rr.build_prompt(coerce("apple"), coerce(cands[1]), None)[0]
    enc = rr.processor(text=[prompt], return_tensors="pt")
    with torch.no_grad():
        h = rr.model.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[0, -1]
        head = rr.model.get_output_embeddings().weight
        head[WORDS.index("True")] += 5.0 * h / h.norm() ** 2
    after = rr.score("apple", cands)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    assert logit(after[1]) - logit(base[1]) == pytest.approx(5.0, abs=1e-3)
    assert [r.index for r in rerank(rr, "apple", cands)] == sorted(range(3), key=lambda i: -after[i])


# ---- bad input and loading ----------------------------------------------------------------------------
def test_unreadable_candidate_image(reranker: MLLMReranker, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    cands = ["a red apple", {"image": bad}]
    with pytest.raises(ImageLoadError, match="doc-2"):
        reranker.score("apple", cands, ids=["doc-1", "doc-2"])
    with pytest.warns(UserWarning, match="doc-2"):
        scores = reranker.score("apple", cands, ids=["doc-1", "doc-2"], on_error="skip")
    assert scores[1] == float("-inf") and 0 < scores[0] < 1


def test_missing_answer_word_is_a_load_error(reranker: MLLMReranker) -> None:
    with pytest.raises(ModelLoadError, match="single token"):
        answer_token_ids(reranker.tokenizer, "Maybe")
    assert answer_token_ids(reranker.tokenizer, "True") == [WORDS.index("True")]


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        load_reranker(tmp_path)
    with pytest.raises(ModelLoadError, match="not in the Hugging Face cache .*offline"):  # hub ids download;
        load_reranker("llava-hf/llava-v1.6-mistral-7b-hf", local_files_only=True, cache_dir=tmp_path / "hub")
