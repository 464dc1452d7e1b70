"""`flashstock db`: apply the Alembic migrations to DATABASE_URL and show where a database stands."""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from cli.common import emit, json_option, load_settings


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@click.group("db")
def db_group() -> None:
    """The SQL system of record (PostgreSQL, or SQLite embedded)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade(revision: str) -> None:
    """Apply migrations to DATABASE_URL (safe to repeat: an up-to-date database is left alone)."""
    from inventory.migrations import upgrade as run_upgrade

    settings = load_settings()
    try:
        run_upgrade(settings.database_url, revision)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise click.ClickException(f"migration failed on {_redacted(settings.database_url)}: {reason}") from error
    click.echo(f"database {_redacted(settings.database_url)} is at revision {revision}")


@db_group.command("current")
@json_option
def current(as_json: bool) -> None:
    """The revision DATABASE_URL is at and the newest one shipped."""
    from inventory.db import make_engine
    from inventory.migrations import current_revision, head_revision

    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise click.ClickException(f"cannot read {_redacted(settings.database_url)}: {reason}") from error
    finally:
        engine.dispose()
    head = head_revision()
    emit({"database": _redacted(settings.database_url), "current": revision, "head": head,
          "up_to_date": revision == head}, as_json=as_json)


COMMANDS = [db_group]
