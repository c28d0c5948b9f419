"""``mmembed train``: fine-tune an encoder on (query, positive) pairs with instructions and hard negatives."""

from __future__ import annotations

import shlex
import signal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _parse_stages(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        _fail(f"--stages takes a comma-separated list of 1, 2, 3 (e.g. 1,2,3), got {text!r}")
        raise  # unreachable


def _parse_ranks(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        lo, hi = (int(v) for v in text.split("-", 1))
    except ValueError:
        _fail(f"--right-ranks takes LO-HI (1-based, inclusive), e.g. 46-50; got {text!r}")
        raise
    return lo, hi


def train_command(
    ctx: typer.Context,
    pairs: Annotated[Path, typer.Argument(
        metavar="PAIRS.jsonl",
        help="One JSON object per line: {query, positive, task|instruction, id, concept}; query and positive "
        "are text, {\"image\": path} or interleaved. Relative image paths are relative to the file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output model directory.")],
    encoder: Annotated[str, typer.Option("--encoder", "-e",
                                         help="Model to start from: 'default' (the bundled model, task adapters "
                                         "already fine-tuned), 'mmembed-mini-towers' (the same towers, adapters "
                                         "reset) or a model directory.")] = "default",
    pool: Annotated[Optional[Path], typer.Option(
        "--pool", help="Extra candidate documents (JSONL: {document, id, concept}) mined for hard negatives "
        "besides the positives.")] = None,
    stages: Annotated[str, typer.Option(
        "--stages", help="1 in-batch negatives, 2 modality-aware hard negatives (mined with the stage-1 model), "
        "3 continual text->text.")] = "1,2",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs per stage.")] = 2,
    stage1_epochs: Annotated[Optional[int], typer.Option("--stage1-epochs", min=1)] = None,
    stage2_epochs: Annotated[Optional[int], typer.Option("--stage2-epochs", min=1)] = None,
    stage3_epochs: Annotated[Optional[int], typer.Option("--stage3-epochs", min=1)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=2)] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate of the adapters and temperature.")] = 1e-3,
    image_lr: Annotated[float, typer.Option("--image-lr", help="Learning rate of the image tower "
                                            "(mmembed-mini only).")] = 1e-4,
    train_parts: Annotated[str, typer.Option(
        "--train", help="What to train: comma-separated adapters, image-tower (mmembed-mini only), temperature. "
        "For a transformers CLIP/SigLIP directory, adapters are LoRA adapters on both towers' attention.")
    ] = "adapters,temperature",
    lora_r: Annotated[Optional[int], typer.Option(
        "--lora-r", min=1, help="LoRA rank (CLIP/SigLIP models only; default 8).")] = None,
    lora_alpha: Annotated[Optional[float], typer.Option(
        "--lora-alpha", min=0.0, help="LoRA scale alpha (CLIP/SigLIP models only; default 16).")] = None,
    hard_negatives: Annotated[int, typer.Option("--hard-negatives", min=0,
                                                help="Mined negatives per query per step.")] = 2,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Depth of the stage-1 ranking mined.")] = 50,
    right_ranks: Annotated[Optional[str], typer.Option(
        "--right-ranks", help="Ranks LO-HI whose right-modality candidates become negatives (default: the "
        "last five of --top-k).")] = None,
    modality_margin: Annotated[float, typer.Option(
        "--modality-margin", min=0.0, help="Cosine margin by which the positive must beat every candidate of "
        "the other modality (0 for plain InfoNCE).")] = 0.2,
    anchor_weight: Annotated[float, typer.Option(
        "--anchor-weight", min=0.0, help="Weight of the loss keeping text documents, uninstructed queries and "
        "same-modality queries near the towers' vectors (0: off).")] = 1.0,
    plain_fraction: Annotated[float, typer.Option(
        "--plain-fraction", min=0.0, max=0.99, help="Share of rows asked without their instruction (against "
        "candidates of the positive's modality only), so plain search keeps working.")] = 0.25,
    stage2_init: Annotated[str, typer.Option(
        "--stage2-init", help="Stage 2 starts from the 'initial' model (as in the paper) or the 'stage1' one.")
    ] = "initial",
    augment: Annotated[bool, typer.Option("--augment/--no-augment",
                                          help="Augment images while the image tower trains (mmembed-mini "
                                          "only).")] = True,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    save_every: Annotated[int, typer.Option("--save-every", min=0,
                                            help="Also checkpoint every N steps (0: each epoch).")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds.")] = False,
    eval_sets: Annotated[Optional[list[str]], typer.Option(
        "--eval", help="Evaluate these `mmembed eval` datasets before and after (with and without the "
        "instruction), into the model card (repeatable; e.g. --eval tuxpaint-mixed).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for torch.")] = None,
) -> None:
    """Fine-tune an encoder so it follows task instructions across modalities (MM-Embed's recipe).

    Progress bars show each stage; a checkpoint is written every epoch (and on Ctrl-C), so an interrupted
    run continues with the same command plus --resume. The result loads with mmembed.load_encoder(OUT).
    """
    import torch

    from ..errors import MMEmbedError
    from .finetune import FinetuneConfig, check_output_dir, finetune
    from .pairs import file_digest, read_pairs, read_pool

    if threads:
        torch.set_num_threads(threads)
    stage_epochs = {s: v for s, v in ((1, stage1_epochs), (2, stage2_epochs), (3, stage3_epochs)) if v}
    parts = tuple(p.strip() for p in train_parts.split(",") if p.strip())
    command = _command_line(ctx)
    # options that only mean something for mmembed-mini: other backends refuse them when given explicitly
    # (compared by name: typer ships its own copy of click's ParameterSource)
    mini_only = [flag for name, flag in (("image_lr", "--image-lr"), ("augment", "--augment/--no-augment"))
                 if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"]
    previous = signal.getsignal(signal.SIGTERM)
    try:
        cfg = FinetuneConfig(stages=_parse_stages(stages), epochs=epochs, stage_epochs=stage_epochs,
                             batch_size=batch_size, lr=lr, image_lr=image_lr, hard_negatives=hard_negatives,
                             top_k=top_k, right_ranks=_parse_ranks(right_ranks), stage2_init=stage2_init,
                             modality_margin=modality_margin, anchor_weight=anchor_weight,
                             plain_fraction=plain_fraction,
                             seed=seed, save_every=save_every)
        check_output_dir(out, resume=resume, overwrite=overwrite)
        typer.secho(f"reading {pairs}" + (f" and {pool}" if pool else ""), err=True, fg=typer.colors.CYAN)
        pair_list = read_pairs(pairs)
        pool_list = read_pool(pool) if pool is not None else []
        # SIGTERM (a scheduler stopping the job) checkpoints like Ctrl-C
        signal.signal(signal.SIGTERM, _sigterm)
        result = finetune(pair_list, encoder, out, pool=pool_list, config=cfg, parts=parts, augment=augment,
                          resume=resume, overwrite=overwrite, data_digests=(file_digest(pairs), file_digest(pool)),
                          base_label=encoder, command=command, mini_only=mini_only, lora_r=lora_r,
                          lora_alpha=lora_alpha,
                          log=lambda m: typer.secho(m, err=True, fg=typer.colors.CYAN))
        if eval_sets:
            from .report import add_evaluation, evaluate_sets

            # the base model is scored after training, so a refused option or bad data fails before any
            # evaluation work; the base on disk is unchanged by training
            typer.secho(f"evaluating {encoder} (before) ...", err=True, fg=typer.colors.CYAN)
            before = evaluate_sets(encoder, eval_sets, uninstructed=eval_sets)
            typer.secho("evaluating the fine-tuned model ...", err=True, fg=typer.colors.CYAN)
            after = evaluate_sets(str(result.out), eval_sets, uninstructed=eval_sets)
            table = add_evaluation(result.out, before, after, base_label=encoder)
            typer.echo(table)
    except KeyboardInterrupt:
        typer.secho(f"interrupted: continue with the same command plus --resume (checkpoint in {out}/checkpoints)",
                    err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(code=130) from None
    except MMEmbedError as exc:
        _fail(str(exc))
    finally:
        signal.signal(signal.SIGTERM, previous)
    typer.echo(f"fine-tuned model written to {out} (load it with mmembed.load_encoder({str(out)!r}))")


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _command_line(ctx: typer.Context) -> str:
    """The command as given (options that differ from their defaults), for the model card. Paths are
    reduced to their names: a card must not carry the paths of the machine it was made on."""
    words = ["mmembed", "train"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None or value == param.default or value in ((), []):
            continue
        shown = [Path(v).name if isinstance(v, Path) else str(v) for v in (value if isinstance(value, (list, tuple))
                                                                            else [value])]
        if param.param_type_name == "argument":
            words += shown
        elif isinstance(value, bool):
            flag = next((o for o in (param.opts if value else param.secondary_opts) if o.startswith("--")), None)
            if flag:
                words.append(flag)
        else:
            for v in shown:
                words += [param.opts[0] if param.opts[0].startswith("--") else param.opts[-1], v]
    return " ".join(shlex.quote(w) for w in words)


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to the ``mmembed`` app (called by :mod:`mmembed.cli`)."""
    app.command("train")(train_command)
