"""Fixtures for CLI tests: a key prefix on real Redis, a migrated Postgres schema, in-process and subprocess runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session, sessionmaker

from inventory import Inventory, Settings
from cli import main
from inventory.tables import LedgerRow, ProductRow

FLASHSTOCK = str(Path(sys.executable).with_name("flashstock"))


@pytest.fixture
def cli_env(real_redis: redis.Redis, settings: Settings, migrated_db_url: str) -> dict[str, str]:
    """Environment pointing the CLI at this test's Redis (one node or the cluster), key prefix and schema."""
    env = {"REDIS_URL": settings.redis_url, "KEY_PREFIX": settings.key_prefix, "DATABASE_URL": migrated_db_url}
    if settings.celery_broker_url:
        env["CELERY_BROKER_URL"] = settings.celery_broker_url
    return env


@pytest.fixture
def live(real_redis: redis.Redis, settings: Settings) -> Inventory:
    """The core on the same Redis and prefix, with the wall clock the CLI uses."""
    return Inventory(real_redis, settings)


@pytest.fixture
def db(cli_env: dict[str, str]) -> sessionmaker[Session]:
    engine = sa.create_engine(cli_env["DATABASE_URL"], poolclass=sa.pool.NullPool)
    yield sessionmaker(engine)
    engine.dispose()


Cli = Callable[..., Result]


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Cli:
    """Run `flashstock ARGS` in process; `code` is the exit code the test expects."""
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> Result:
        result = runner.invoke(main, list(args), env=cli_env, catch_exceptions=False)
        assert result.exit_code == code, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
        if code:
            assert "Traceback" not in result.stderr
        return result

    return invoke


@pytest.fixture
def cli_json(cli: Cli) -> Callable[..., Any]:
    """Run a command with --json and return the parsed output."""

    def invoke(*args: str, code: int = 0) -> Any:
        return json.loads(cli(*args, "--json", code=code).stdout)

    return invoke


@pytest.fixture
def run_process(cli_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed `flashstock` console script as a real subprocess."""

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "KEY_PREFIX", "DATABASE_URL", "CELERY_BROKER_URL")}
        return subprocess.run([FLASHSTOCK, *args], env={**env, **cli_env}, cwd=cwd, capture_output=True,
                              text=True, timeout=120)

    return run


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def persisted(db: sessionmaker[Session], sku: str) -> tuple[int, int]:
    """(total, sold) from the Postgres stock ledger."""
    with db() as session:
        total, sold = session.execute(
            sa.select(sa.func.coalesce(sa.func.sum(LedgerRow.total_delta), 0),
                      sa.func.coalesce(sa.func.sum(LedgerRow.sold_delta), 0)).where(LedgerRow.sku == sku)
        ).one()
    return int(total), int(sold)


def product_row(db: sessionmaker[Session], sku: str) -> ProductRow | None:
    with db() as session:
        return session.get(ProductRow, sku)
