"""``mmembed models``: the curated table of models mmembed runs, and which are in the local hub cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def models(
        as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
        cache_dir: Optional[Path] = typer.Option(
            None, "--cache-dir", help="Hugging Face hub cache to check (default: HF_HUB_CACHE / HF_HOME)."),
    ) -> None:
        """List the models mmembed knows how to run: inputs, size, memory, dims, license, instruction format,
        and whether each is already in the local Hugging Face cache."""
        from .catalog import format_table, rows

        table = rows(cache_dir)
        typer.echo(json.dumps(table, indent=2) if as_json else format_table(table))
