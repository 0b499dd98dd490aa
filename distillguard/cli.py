"""The `distillguard` command line (typer). Commands are thin: they parse options and call
the library, so every entry point shares the same code paths."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer
from rich.console import Console

from distillguard import __version__
from distillguard.config import get_settings

app = typer.Typer(
    help="DistillGuard: catch and prove model-extraction attacks.", no_args_is_help=True
)
console = Console(stderr=True)


@app.callback()
def _main() -> None:
    """Settings come from DG_* environment variables and an optional distillguard.toml."""


@app.command()
def version() -> None:
    """Print the DistillGuard version."""
    print(__version__)


@app.command("config")
def show_config() -> None:
    """Print the effective settings (secrets masked)."""
    settings = get_settings()
    for key, value in settings.model_dump().items():
        print(f"{key} = {value}")


@app.command()
def migrate() -> None:
    """Create the database and apply pending schema migrations."""
    from storage import open_store

    store = open_store(migrate=False)
    try:
        applied = store.migrate()
        console.print(
            f"{store.backend} store {store.database}: applied {applied or 'nothing'}; "
            f"at migration {max(store.applied_migrations())}"
        )
    finally:
        store.close()


@app.command()
def retention(
    table: Annotated[str, typer.Option(help="Day-partitioned table to prune.")] = "events",
    before: Annotated[
        str, typer.Option(help="Drop whole days before this date (YYYY-MM-DD).")
    ] = "",
) -> None:
    """Drop daily partitions older than a date (how retention works on every ClickHouse)."""
    from storage import open_store

    if not before:
        raise typer.BadParameter("--before is required")
    store = open_store()
    try:
        dropped = store.drop_partitions_before(table, date.fromisoformat(before))
        console.print(f"dropped {len(dropped)} partitions of {table}: {', '.join(dropped) or '-'}")
    finally:
        store.close()


@app.command()
def demo(
    sessions: Annotated[int, typer.Option(help="ShareGPT sessions to replay.")] = 400,
    accounts: Annotated[int, typer.Option(help="Benign accounts they are spread over.")] = 60,
) -> None:
    """Real-prompt traffic through the pipeline on embedded defaults, with a summary."""
    from distillguard.demo import run_demo

    run_demo(get_settings(), sessions=sessions, accounts=accounts, console=Console())


if __name__ == "__main__":
    app()
