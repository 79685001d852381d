"""``audiodiff recipes``: the bundled recipes, each with its one-line description."""

from __future__ import annotations

import click


@click.command()
@click.option("--paths", is_flag=True, help="Print where each recipe file is, to copy and edit it.")
def recipes(paths: bool):
    """List the bundled recipes (`audiodiff train NAME` trains one of them)."""
    from audiodiff import recipebook

    found = recipebook.bundled()
    width = max(map(len, found), default=0)
    for name, path in found.items():
        click.echo(f"{name:<{width}}  {path if paths else recipebook.describe(path)}")
