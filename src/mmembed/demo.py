"""``mmembed demo``: index a real folder of clip-art images offline and search it.

The folder is the Tux Paint stamps (Debian ``tuxpaint-stamps-default``, fetched once into the cache). First only
the *images* are embedded -- captions are kept as metadata so you can judge the results -- so every text search
is genuine text->image retrieval with the default model. Then a second collection holds the images *and* their
captions as text documents, and one query with two task instructions returns images or texts.
"""

from __future__ import annotations

from pathlib import Path

import typer

DEMO_QUERIES: list[tuple[str, str]] = [
    ("a red fire truck", "text->image"),
    ("a car", "text->image"),
    ("a bird", "text->image"),
    ("a fish", "text->image"),
    ("fruit", "text->image"),
]
# The bundled model learnt from emoji-style art: objects, animals, food and vehicles work best; scenes, people
# and abstract words (try "musical instrument") mostly do not. See the model card.


def run_demo(db: Path, *, k: int = 5, limit: int | None = None, encoder: str = "default") -> None:
    from .data.tuxpaint import load_tuxpaint
    from .store import Store

    typer.echo("Fetching the Tux Paint stamps (first run only)...")
    stamps = load_tuxpaint()
    if limit:
        stamps = stamps[:limit]
    store = Store(db, encoder=encoder, collection="tuxpaint-demo")
    store.record_roots({s.image_path.parent for s in stamps})
    typer.echo(f"Indexing {len(stamps)} images with {store.encoder.name} into {db} ...")
    res = store.add(
        [{"image": s.image_path} for s in stamps],
        ids=[s.id for s in stamps],
        metadatas=[{"caption": s.caption, "category": s.category} for s in stamps],
        on_error="skip",
        show_progress=True,
    )
    typer.echo(f"  {res.summary()}; {store.count()} images in the collection")
    for s in res.skipped:
        typer.secho(f"  skipped #{s.index}: {s.reason}", fg=typer.colors.YELLOW, err=True)

    def show(title: str, hits: list) -> None:  # type: ignore[type-arg]
        typer.secho(f"\n{title}", bold=True)
        for rank, h in enumerate(hits, start=1):
            typer.echo(f"  {rank}. {h.score:.3f}  {h.metadata.get('caption', '')!s:<40} {h.id}")

    for text, task in DEMO_QUERIES:
        show(f"search {text!r} (task {task})", store.query(text, k=k, task=task))
    probe = next((s for s in stamps if "duck" in s.caption.lower()), stamps[0])
    show(f"search by image: {probe.id} ({probe.caption!r}), task image->image",
         store.query({"image": probe.image_path}, k=k, task="image->image"))
    run_mixed(db, stamps, encoder=encoder, k=min(k, 3))
    typer.echo(
        "\nTry your own: mmembed search 'a yellow car' --db " + str(db) + " --collection tuxpaint-demo -k 5"
    )


MIXED_QUERY = "a bird"


def run_mixed(db: Path, stamps: list, *, encoder: str = "default", k: int = 3) -> None:  # type: ignore[type-arg]
    """The modality bias and its fix: images *and* their captions in one collection, one query, two tasks."""
    from .store import Store

    store = Store(db, encoder=encoder, collection="tuxpaint-demo-mixed")
    store.record_roots({s.image_path.parent for s in stamps})
    typer.secho("\nImages and their captions in one collection", bold=True)
    typer.echo(f"Indexing the {len(stamps)} images again, and their captions as separate text documents ...")
    res = store.add(
        [{"image": s.image_path} for s in stamps] + [s.caption for s in stamps],
        ids=[f"image:{s.id}" for s in stamps] + [f"text:{s.id}" for s in stamps],
        metadatas=[{"caption": s.caption} for s in stamps] * 2,
        on_error="skip",
        show_progress=True,
    )
    typer.echo(f"  {res.summary()}; {store.count()} documents")
    for task in ("text->image", "text->text"):
        typer.secho(f"\nsearch {MIXED_QUERY!r} (task {task})", bold=True)
        for rank, h in enumerate(store.query(MIXED_QUERY, k=k, task=task), start=1):
            typer.echo(f"  {rank}. {h.score:.3f}  [{h.modality}] {h.metadata.get('caption', '')!s:<32} {h.id}")
    typer.echo("The task decides which modality comes back: the default model's task adapters were fine-tuned "
               "for it (`python -m mmembed.train.modality`).")


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        db: Path = typer.Option(Path("mmembed_demo_db"), "--db", help="Where the demo database is written."),
        k: int = typer.Option(5, "-k", min=1, help="Results per query."),
        limit: int = typer.Option(0, "--limit", min=0, help="Index only the first N stamps (0 = all)."),
        encoder: str = typer.Option("default", "--encoder", "-e", help="Encoder name or model directory."),
    ) -> None:
        """Index the Tux Paint clip-art stamps offline and run a few text and image searches."""
        from .errors import MMEmbedError

        try:
            run_demo(db, k=k, limit=limit or None, encoder=encoder)
        except MMEmbedError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from exc
