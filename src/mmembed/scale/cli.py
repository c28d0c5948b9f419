"""``mmembed index PATH --ray auto|ADDRESS --url URL``: the index command's Ray path (called from mmembed.cli)."""

from __future__ import annotations

from pathlib import Path

import typer


def index_on_ray(path: Path, *, ray_address: str, url: str | None, host: str | None, port: int, collection: str,
                 encoder: str, batch_size: int, strict: bool, recursive: bool, replace_changed: bool,
                 actors: int | None, cpus_per_actor: float | None, gpus_per_actor: float) -> None:
    from ..errors import MMEmbedError
    from .pipeline import RayIndexError, index_with_ray

    def fail(message: str, code: int = 2) -> None:
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=code)

    if not (url or host):
        fail("--ray writes to a Chroma server that every Ray worker can reach: give --url http://HOST:PORT "
             "(start one with `chroma run --path DIR --host 0.0.0.0 --port 8000`)")
    if strict:
        fail("--strict cannot be combined with --ray: inputs are decoded in parallel, so a bad one cannot stop "
             "the others; without --strict bad inputs are skipped and listed at the end")
    store_url = url or f"http://{host}:{port}"

    def started(cluster, plan) -> None:  # type: ignore[no-untyped-def]
        typer.echo(f"ray: {cluster.describe()}; {plan.describe()}", err=True)

    def report_skipped(result) -> None:  # type: ignore[no-untyped-def]
        for s in result.skipped:
            typer.secho(f"  skipped {result.origins.get(s.index, f'#{s.index}')}: {s.cause}",
                        fg=typer.colors.YELLOW, err=True)

    try:
        result = index_with_ray(path, store_url=store_url, collection=collection, encoder=encoder,
                                concurrency=actors, batch_size=batch_size, num_cpus=cpus_per_actor,
                                num_gpus=gpus_per_actor, ray_address=ray_address, recursive=recursive,
                                replace_by="source" if replace_changed else None, on_start=started)
    except RayIndexError as exc:
        part = exc.partial
        done = len(part.added) + len(part.unchanged) + len(part.skipped)
        typer.echo(f"stopped after {done} of {part.total} inputs: {part.summary()}. Finished records are kept; "
                   "run the same command again to resume.", err=True)
        report_skipped(part)
        fail(str(exc))
        return
    except MMEmbedError as exc:
        fail(str(exc))
        return
    except KeyboardInterrupt:
        fail("interrupted; finished records are kept, run the same command again to resume", 130)
        return
    typer.echo(f"{result.summary()}; collection {collection!r} now holds {result.count} documents "
               f"({result.seconds:.1f} s on Ray)")
    report_skipped(result)
