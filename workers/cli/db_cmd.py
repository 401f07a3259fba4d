"""``tradefleet db``: schema migrations (a step of their own)."""

from __future__ import annotations

import typer

from workers.db.engines import current_revision, upgrade
from workers.settings import get_settings

app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_cmd(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: head)."""
    url = get_settings().sqlalchemy_url
    upgrade(url, revision)
    typer.echo(f"database at revision {current_revision(url)}")
