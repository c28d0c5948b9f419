"""The modality-bias recipe: teach the default model to follow "find an image" vs "find a text" instructions.

    python -m mmembed.train.modality --work DIR                    # v3's adapters on the default's towers
    python -m mmembed.train.modality --work DIR --data v2 --encoder mmembed-mini-v2-towers   # v2's

1. **prepare** (cached in ``DIR/data``): pairs from the *training* sets only -- never Tux Paint, the evaluation
   set -- written as an ordinary ``mmembed train`` pairs file:

   * text->image: an emoji/icon/Fashion-MNIST name -> one of its drawings (up to ``--images-per-concept``
     styles), under the ``text->image`` task; the names themselves are in the pool as *text documents*, so
     the stage-1 model ranks a query's own caption text above its image: the wrong-modality hard negative;
   * text->text: the emoji name in another language (``emojibase-data`` locales) or its keywords -> the
     English name as text, under the ``text->text`` task (the images are the wrong-modality distractors);
   * image->text: a drawing -> its name, under the ``image->text`` task;
   * (v3) text->image+text: a name -> the drawing *with* its caption (an image + text document, as a PDF page
     with its text layer is), a third each asked with no instruction, a ``text->image+text`` and a
     ``text->text`` phrasing: such documents must stay above unrelated text documents for plain queries.

2. **train**: ``mmembed train DIR/data/pairs.jsonl --pool DIR/data/pool.jsonl --out DIR/model`` with the
   options below (the frozen text tower and image tower stay as shipped; the task adapters and temperature
   learn). Interrupt it and run the recipe again: it resumes.
3. **evaluate** before and after on ``tuxpaint`` (image-only pool), ``tuxpaint-mixed`` (images + captions in
   one pool; ModAcc@1) and ``python-faq`` (text retrieval must not regress); prints the Markdown table and
   writes it to ``DIR/results.md`` and into the model card.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

#: emojibase-data locales used for the text->text pairs (several scripts; Tux Paint is never touched)
LOCALES: tuple[str, ...] = ("de", "es", "fr", "it", "ja", "ko", "nl", "pt", "ru", "zh")
EVAL_SETS: tuple[str, ...] = ("tuxpaint", "tuxpaint-mixed", "python-faq")
#: also scored with queries asked without an instruction (plain search must keep its quality)
UNINSTRUCTED_SETS: tuple[str, ...] = ("tuxpaint", "python-faq")
DATA_VERSION = 2
#: the prepared data's manifest (packages, versions, digests), beside pairs.jsonl
MANIFEST = "manifest.json"

#: Each pair gets one task of its family (round robin), and training samples that task's paraphrases: the
#: adapters learn what *any* phrasing of "find an image" / "find a text" means, not one sentence.
TASK_FAMILIES: dict[str, tuple[str, ...]] = {
    "text->image": ("text->image", "mbeir:mscoco:text->image", "mbeir:visualnews:text->image",
                    "mbeir:fashion200k:text->image"),
    "text->text": ("text->text", "question->passage", "mbeir:webqa:text->text"),
    "image->text": ("image->text", "mbeir:mscoco:image->text", "mbeir:visualnews:image->text",
                    "mbeir:fashion200k:image->text"),
    "text->image+text": ("text->image+text", "mbeir:webqa:text->image+text", "mbeir:edis:text->image+text"),
}
#: How the captioned pairs (plain text -> drawing + caption) are asked, round robin: ``None`` is no instruction.
CAPTIONED_TASKS: tuple[str | None, ...] = (None, "text->image+text", "text->text")


def sentence_form(name: str, rng: np.random.Generator) -> str:
    """A short caption sentence around a bare name ("frog" -> "A frog."), so training sees names *and*
    sentences as queries and documents (captions in the wild are both)."""
    article = "An" if name[:1].lower() in "aeiou" else "A"
    forms = (f"{article} {name}.", f"The {name}.", f"{name[:1].upper()}{name[1:]}.", f"A picture of {name}.")
    return forms[int(rng.integers(len(forms)))]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _emojibase(locale: str) -> dict[str, dict[str, Any]]:
    """hexcode -> entry of ``emojibase-data/<locale>/data.json`` (skin tones left out)."""
    from ..data.fetch import fetch_npm
    from ..data.training_sets import has_skin_tone, normalize_hexcode

    root = fetch_npm("emojibase-data")
    path = root / locale / "data.json"
    if not path.is_file():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for entry in json.loads(path.read_text(encoding="utf-8")):
        code = normalize_hexcode(entry.get("hexcode", ""))
        if code and not has_skin_tone(code) and entry.get("label"):
            out.setdefault(code, entry)
    return out


#: Data recipes: which training set (:data:`mmembed.train.mini.DATA_RECIPES`) and what share of the pairs get
#: a free-text phrasing from :data:`mmembed.train.phrasings.TRAIN` instead of the task's paraphrases.
RECIPES: dict[str, dict[str, Any]] = {
    "v2": {"training_set": "v2", "free_phrasing_share": 0.0},
    "v3": {"training_set": "v3", "free_phrasing_share": 0.5, "captioned": True},
}


def prepare(work: Path, *, images_per_concept: int = 4, seed: int = 0, recipe: str = "v2",
            log: Any = _say) -> tuple[Path, Path]:
    """Write ``work/data/pairs.jsonl``, ``pool.jsonl`` and ``images/`` (skipped when already there)."""
    from PIL import Image

    from ..data.training_sets import build_training_set, clean_label

    from ..data.lock import load_lock

    data = work / "data"
    pairs_path, pool_path, done = data / "pairs.jsonl", data / "pool.jsonl", data / "DONE"
    pins = [[p.registry, p.name, p.version, p.sha256] for p in load_lock().packages]
    from .mini import DATA_RECIPES
    from .phrasings import TRAIN

    spec = RECIPES[recipe]
    stamp_d: dict[str, Any] = {"version": DATA_VERSION, "images_per_concept": images_per_concept, "seed": seed,
                               "lock": pins}
    if recipe != "v2":  # v2's stamp stays as it was, so a prepared v2 directory is still recognised
        stamp_d.update(recipe=recipe, spec=spec, phrasings=TRAIN)
    stamp = json.dumps(stamp_d)
    if done.is_file() and done.read_text() == stamp and (data / MANIFEST).is_file():
        log(f"training pairs already prepared in {data}")
        return pairs_path, pool_path
    log("building the training pairs from the emoji/icon training sets (never Tux Paint) ...")
    ts = build_training_set(log=log, **DATA_RECIPES[spec["training_set"]])
    rng = np.random.default_rng(seed)
    free_rng = np.random.default_rng([seed, 1])  # its own stream: v2's pairs do not change
    cap_rng = np.random.default_rng([seed, 2])
    by_concept: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(ts.concepts):
        by_concept[c].append(i)
    caption_of = {c: ts.captions[idx[0]] for c, idx in by_concept.items()}
    img_dir = data / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    pairs: list[dict[str, Any]] = []
    pool: list[dict[str, Any]] = []
    turn: dict[str, int] = defaultdict(int)

    def task(kind: str) -> str:
        family = TASK_FAMILIES[kind]
        turn[kind] += 1
        return family[turn[kind] % len(family)]

    def phrased(pair: dict[str, Any], kind: str) -> dict[str, Any]:
        """Give a share of the pairs one of the users' own phrasings (round robin) as a free instruction."""
        if spec["free_phrasing_share"] and free_rng.random() < spec["free_phrasing_share"]:
            turn["free:" + kind] += 1
            pair["instruction"] = TRAIN[kind][turn["free:" + kind] % len(TRAIN[kind])]
        return pair

    texts_of: dict[str, list[str]] = {}
    for concept in sorted(by_concept):
        idx = by_concept[concept]
        chosen = sorted(rng.choice(idx, size=min(images_per_concept, len(idx)), replace=False).tolist())
        name = caption_of[concept]
        # the bare name and one sentence around it: both are text documents of the pool (the query's own
        # wording is always among the distractors, as in the mixed benchmark) and both serve as queries
        texts = [name, sentence_form(name, rng)]
        texts_of[concept] = texts
        for k, i in enumerate(chosen):
            img = f"images/{i:06d}.png"
            if not (img_dir / img[len("images/"):]).is_file():
                Image.fromarray(ts.images[i]).save(img_dir / img[len("images/"):], optimize=False)
            pairs.append(phrased({"query": texts[k % 2], "positive": {"image": img}, "task": task("text->image"),
                                  "concept": concept, "id": f"img:{i}"}, "text->image"))
            if k == 0:
                pairs.append(phrased({"query": {"image": img}, "positive": texts[int(rng.integers(2))],
                                      "task": task("image->text"), "concept": concept}, "image->text"))
                if spec.get("captioned"):
                    # a plain text query -> the drawing *with* its caption (an image + text document, as a
                    # PDF page with its text layer or a screenshot with its OCR text is): such documents must
                    # stay above unrelated text documents. Asked a third each with no instruction, a
                    # "text->image+text" phrasing and a "text->text" one (a page with a text layer is a
                    # passage too)
                    j = int(cap_rng.integers(2))
                    pair = {"query": texts[j], "positive": {"text": texts[1 - j], "image": img},
                            "concept": concept, "id": f"cap:{i}"}
                    kind = CAPTIONED_TASKS[turn["captioned"] % len(CAPTIONED_TASKS)]
                    turn["captioned"] += 1
                    if kind is not None:
                        pair["task"] = task(kind)
                    pairs.append(pair)
        for j, text in enumerate(texts):
            pool.append({"text": text, "id": f"txt{j}:{concept}", "concept": concept})
    # text->text: another language's name, or the keywords, -> the English name (emoji concepts only)
    en = _emojibase("en")
    locales = {loc: _emojibase(loc) for loc in LOCALES}
    for concept in sorted(by_concept):
        if concept not in en:
            continue
        names = texts_of[concept]
        options = []
        for loc, table in locales.items():
            label = (table.get(concept) or {}).get("label")
            if label and clean_label(label).casefold() != names[0].casefold():
                options.append(clean_label(label))
        if options:
            pairs.append(phrased({"query": options[int(rng.integers(len(options)))],
                                  "positive": names[int(rng.integers(2))], "task": task("text->text"),
                                  "concept": concept}, "text->text"))
        tags = [t for t in en[concept].get("tags", []) if t.casefold() != names[0].casefold()]
        if len(tags) >= 2:
            pairs.append(phrased({"query": ", ".join(tags[:6]), "positive": names[0], "task": task("text->text"),
                                  "concept": concept}, "text->text"))
    order = rng.permutation(len(pairs))
    pairs_path.write_text("".join(json.dumps(pairs[i], ensure_ascii=False) + "\n" for i in order), encoding="utf-8")
    pool_path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pool), encoding="utf-8")
    manifest = data_manifest(data, ts)
    (data / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    done.write_text(stamp)
    counts: dict[str, int] = defaultdict(int)
    for p in pairs:
        counts[next((k for k, fam in TASK_FAMILIES.items() if p.get("task") in fam), "no instruction")] += 1
    log(f"wrote {len(pairs)} pairs ({dict(counts)}) and a pool of {len(pool)} caption texts to {data}")
    return pairs_path, pool_path


def data_manifest(data: Path, ts: Any) -> dict[str, Any]:
    """What the prepared data is, by hash: the packages actually fetched (name, version, sha256, pinned or
    not), the rendered training set, the pairs and pool files and every written image; two preparations from
    the same lock and renderer give the same manifest."""
    from ..data.fetch import fetch_npm, source_record
    from ..data.lock import render_versions, sha256_file
    from ..data.training_sets import training_set_digests

    packages = list(ts.packages)
    emojibase = source_record(fetch_npm("emojibase-data"))  # the locales of the text->text pairs
    if emojibase and not any(p["name"] == emojibase["name"] for p in packages):
        packages.append(emojibase)
    h = hashlib.sha256()
    images = sorted((data / "images").glob("*.png"))
    for img in images:
        h.update(img.name.encode() + b"\0" + hashlib.sha256(img.read_bytes()).digest())
    return {
        "packages": packages,
        "render_versions": render_versions(),
        "digests": {
            "training_set": training_set_digests(ts)["all"],
            "pairs.jsonl": sha256_file(data / "pairs.jsonl"),
            "pool.jsonl": sha256_file(data / "pool.jsonl"),
            "images": {"files": len(images), "sha256": h.hexdigest()},
        },
    }


def digest_key(recipe: str) -> str:
    """Where the lock keeps the digests of a recipe's prepared data (v2's under its original key)."""
    return "modality" if recipe == "v2" else f"modality_{recipe}"


def report_digests(manifest: dict[str, Any], log: Any = _say, recipe: str = "v2") -> bool:
    """Compare the prepared data's digests with those recorded in the lock; say which differ."""
    from ..data.lock import compare_digests, load_lock

    recorded = load_lock().digests.get(digest_key(recipe))
    if not recorded:
        log("the lock records no digests of the modality data yet (python -m mmembed.train.modality --record-digests)")
        return False
    problems = compare_digests(recorded, manifest["digests"], what="modality data")
    if problems:
        log("WARNING: the prepared data differs from the data the shipped weights were trained on:\n  "
            + "\n  ".join(problems))
        return False
    log(f"the prepared data is identical to the lock's record (pairs {manifest['digests']['pairs.jsonl'][:12]}..., "
        f"{manifest['digests']['images']['files']} images)")
    return True


def share_text_tower(after: Any, before: Any) -> None:
    """Let two mmembed-mini encoders share one frozen text tower (and its memo), so the evaluation does not
    embed every query twice; they must use the same tower."""
    a, b = getattr(after, "model", None), getattr(before, "model", None)
    if a is None or b is None or a.text_tower.kind != b.text_tower.kind:
        return
    b.text_tower._cache_size = max(b.text_tower._cache_size, 20000)
    a.text_tower = b.text_tower


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmembed.train.modality", description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="working directory (data, model, results)")
    ap.add_argument("--encoder", default="mmembed-mini-towers",
                    help="model to start from (default: the default model's towers with identity adapters)")
    ap.add_argument("--images-per-concept", type=int, default=4)
    ap.add_argument("--data", choices=tuple(RECIPES), default="v3",
                    help="data recipe: v3, the default's (the v2 sets plus the Open Clip Art training slice, half the "
                         "pairs phrased in users' own words, plain text queries for drawings with their caption), "
                         "or v2 (emoji/icon sets, registry paraphrases; with --encoder mmembed-mini-v2-towers)")
    ap.add_argument("--stages", default="2")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of stage 1 (the miner)")
    ap.add_argument("--stage2-epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--modality-margin", type=float, default=0.2)
    ap.add_argument("--hard-negatives", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-name", default=None,
                    help="name written into the fine-tuned model's config (default: the base model's name + '-ft')")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="evaluate on a sample of N stamps (quick look)")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--record-digests", action="store_true",
                    help="store the prepared data's digests in the training-data lock (maintainers, after a re-pin)")
    args = ap.parse_args(argv)

    import torch

    from ..encoders.registry import load_encoder
    from .finetune import FinetuneConfig, finetune
    from .pairs import file_digest, read_pairs, read_pool
    from .report import add_evaluation, evaluate_sets

    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    work = Path(args.work).expanduser()
    pairs_path, pool_path = prepare(work, images_per_concept=args.images_per_concept, seed=args.seed,
                                    recipe=args.data)
    manifest = json.loads((pairs_path.parent / MANIFEST).read_text(encoding="utf-8"))
    report_digests(manifest, recipe=args.data)
    if args.record_digests:
        from ..data.lock import load_lock

        lock = load_lock()
        lock.digests[digest_key(args.data)] = manifest["digests"]
        _say(f"recorded the modality data's digests in {lock.save()}")
    out = work / "model"
    stages = tuple(int(s) for s in args.stages.split(","))
    cfg = FinetuneConfig(stages=stages, epochs=args.epochs, stage_epochs={2: args.stage2_epochs, 3: args.epochs},
                         batch_size=args.batch_size, lr=args.lr, hard_negatives=args.hard_negatives, seed=args.seed,
                         modality_margin=args.modality_margin)
    command = (f"mmembed train {pairs_path.name} --pool {pool_path.name} --encoder {args.encoder} --out DIR "
               f"--stages {args.stages} --epochs {args.epochs} --stage2-epochs {args.stage2_epochs} "
               f"--batch-size {args.batch_size} --lr {args.lr} --hard-negatives {args.hard_negatives} "
               f"--modality-margin {args.modality_margin} --seed {args.seed}")
    if args.data != "v2":
        base = "TOWERS_DIR" if os.sep in args.encoder else args.encoder  # no machine paths in the card
        command = f"python -m mmembed.train.modality --data {args.data} --encoder {base} --work DIR"
    resume = (out / "checkpoints" / "state.pt").is_file()
    finished = (out / "training_summary.json").is_file() and not resume
    if finished:
        _say(f"{out} already holds the fine-tuned model (delete it to retrain)")
    else:
        t_train = time.monotonic()
        finetune(read_pairs(pairs_path), args.encoder, out, pool=read_pool(pool_path), config=cfg,
                 resume=resume, overwrite=not resume, data_digests=(file_digest(pairs_path), file_digest(pool_path)),
                 base_label=args.encoder, command=command, log=_say)
        _say(f"training (text embedding, mining and all stages) took {(time.monotonic() - t_train) / 60:.1f} min")
        if args.model_name:
            cfg_path = out / "mmembed_config.json"
            model_cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            model_cfg["model_name"] = args.model_name
            cfg_path.write_text(json.dumps(model_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        summary_path = out / "training_summary.json"  # what the weights were trained from, by version and hash
        summary = json.loads(summary_path.read_text())
        summary["data_manifest"] = manifest
        summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    if not finished:  # how long this run took, on how many threads, under what load (bench_reproduce.py reads it)
        (work / "run.json").write_text(json.dumps({
            "threads": args.threads, "minutes_total_before_eval": round((time.monotonic() - t0) / 60, 2),
            "load_average_end": [round(v, 2) for v in os.getloadavg()]}, indent=2) + "\n")
    if args.no_eval:
        return 0
    before_enc = load_encoder(args.encoder)
    after_enc = load_encoder(str(out))
    share_text_tower(after_enc, before_enc)
    _say(f"evaluating {before_enc.name} (before) and {after_enc.name} (after) on {', '.join(EVAL_SETS)} ...")
    before = evaluate_sets(before_enc, EVAL_SETS, limit=args.limit, uninstructed=UNINSTRUCTED_SETS)
    after = evaluate_sets(after_enc, EVAL_SETS, limit=args.limit, uninstructed=UNINSTRUCTED_SETS)
    note = (f"Before = `{args.encoder}` ({before_enc.name}), after = this model. Recipe: "
            f"`python -m mmembed.train.modality --work DIR` ({(time.monotonic() - t0) / 60:.0f} min on "
            f"{args.threads} CPU threads incl. evaluation).")
    table = add_evaluation(out, before, after, base_label=args.encoder, note=note)
    (work / "results.md").write_text(note + "\n\n" + table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # OpenMP threads that sleep instead of spinning while they wait: on a shared, oversubscribed CPU a spinning
    # 2-thread run was ~10x slower (an epoch took 18 min instead of ~1); results do not depend on it
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
