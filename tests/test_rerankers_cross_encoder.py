"""The text cross-encoder reranker on a tiny BERT built here and saved with its tokenizer (nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmembed import load_reranker
from mmembed.pipeline import rerank
from mmembed.errors import InputError, ModelLoadError
from mmembed.rerankers.cross_encoder import CrossEncoderReranker

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "the", "red", "apple", "green", "leaf", "blue", "sea", "is",
         "what", "colour", "of", "an", "?", "."]


def build_tiny_bert(directory: Path, *, num_labels: int = 1, seed: int = 0) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", model_max_length=64)
    config = BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)  # spread the random scores
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def reranker(bert_dir: Path) -> CrossEncoderReranker:
    rr = load_reranker(bert_dir, device="cpu")
    assert isinstance(rr, CrossEncoderReranker)
    return rr


CANDS = ["a red apple", "the blue sea", "a green leaf", "what colour is the sea ?"]


def _reference(directory: Path, query: str, texts: list[str]) -> list[float]:
    """Plain transformers: tokenise the pair, run the classifier, sigmoid of the single logit."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    out = []
    for t in texts:
        enc = tok(query, t, return_tensors="pt")
        with torch.no_grad():
            out.append(float(torch.sigmoid(model(**enc).logits[0, 0])))
    return out


def test_scores_match_the_checkpoint_and_order_follows(reranker: CrossEncoderReranker, bert_dir: Path) -> None:
    scores = reranker.score("red apple", CANDS, batch_size=3)
    expected = _reference(bert_dir, "red apple", CANDS)
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len({round(s, 4) for s in scores}) == len(CANDS)
    assert [r.index for r in rerank(reranker, "red apple", CANDS)] == sorted(range(4), key=lambda i: -expected[i])
    # the instruction is not given to a cross-encoder
    assert reranker.score("red apple", CANDS, task="question->passage") == pytest.approx(scores, abs=1e-6)


def test_image_parts_are_ignored(reranker: CrossEncoderReranker) -> None:
    img = Image.new("RGB", (16, 16), "red")
    plain = reranker.score("red apple", ["a red apple", "the blue sea"])
    mixed = reranker.score({"image": img, "text": "red apple"},
                           [{"image": img, "text": "a red apple"}, ["the", img, "blue sea"]])
    assert mixed[0] == pytest.approx(plain[0], abs=1e-6)
    assert mixed[1] == pytest.approx(reranker.score("red apple", ["the\nblue sea"])[0], abs=1e-6)


def test_image_only_candidate_ranks_last_with_warning(reranker: CrossEncoderReranker) -> None:
    img = Image.new("RGB", (16, 16), "red")
    with pytest.warns(UserWarning, match="1 candidate.*no text"):
        ranked = rerank(reranker, "red apple", [{"image": img}, "the blue sea", "a red apple"])
    assert ranked[-1].index == 0 and ranked[-1].score == float("-inf")


def test_image_only_query_is_refused(reranker: CrossEncoderReranker) -> None:
    with pytest.raises(InputError, match="text only"):
        reranker.score({"image": Image.new("RGB", (16, 16), "red")}, CANDS)


def test_saved_cross_encoder_directory_and_classifier_refusal(reranker: CrossEncoderReranker, bert_dir: Path,
                                                              tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    reranker.model.save(str(saved))
    assert json.loads((saved / "config_sentence_transformers.json").read_text())["model_type"] == "CrossEncoder"
    again = load_reranker(saved, device="cpu")
    assert again.score("red apple", CANDS) == pytest.approx(reranker.score("red apple", CANDS), abs=1e-6)
    nli = build_tiny_bert(tmp_path / "nli", num_labels=3)
    with pytest.raises(ModelLoadError, match="3 output labels"):
        load_reranker(nli, device="cpu")
