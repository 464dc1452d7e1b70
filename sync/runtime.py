"""Per-process wiring for tasks: settings, the core and a session factory, created on first use."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from inventory.config import Settings
from inventory.db import make_engine, make_session_factory
from inventory.engine import Inventory
from inventory.recovery import check_before_loading


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()


@lru_cache(maxsize=1)
def inventory() -> Inventory:
    """The core for this process (created lazily, so prefork children each get their own pools)."""
    inv = Inventory.from_settings(settings())
    if settings().recovery_on_script_loss:
        inv.ctx.scripts.on_cache_lost = lambda: check_before_loading(inv, sessions())
    return inv


@lru_cache(maxsize=1)
def sessions() -> sessionmaker[Session]:
    return make_session_factory(make_engine(settings().database_url, pool_size=2))


def reset() -> None:
    """Forget everything cached (after fork, or when tests change the environment)."""
    for cached in (settings, inventory, sessions):
        cached.cache_clear()
