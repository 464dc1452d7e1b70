"""`flashstock serve`: the HTTP API under gunicorn + gevent, on the embedded default or real servers."""

from __future__ import annotations

import secrets
from typing import Any, Callable

import click

from inventory.cli.common import load_settings
from inventory.config import Settings
from inventory.engine import Inventory
from inventory.errors import ProductNotFound
from inventory.store import MEMORY_URL

# (sku, name, price in cents, stock, per-user limit)
DEMO_PRODUCTS = (
    ("DEMO-HOT", "Flash-sale headphones", 4999, 100, 1),
    ("DEMO-TEE", "Launch-day T-shirt", 1999, 500, 3),
    ("DEMO-MUG", "Collector's mug", 1299, 50, 2),
)


def seed_demo_products(inventory: Inventory) -> list[str]:
    """Create the demo products that do not exist yet (existing ones and their stock are left alone)."""
    created = []
    for sku, name, price, stock, limit in DEMO_PRODUCTS:
        try:
            inventory.catalog.get(sku)
            continue
        except ProductNotFound:
            pass
        inventory.catalog.configure(sku, name=name, price=price, currency="USD", per_user_limit=limit)
        inventory.catalog.adjust_stock(sku, set_total=stock, reason="seed")
        created.append(sku)
    return created


def _with_demo_credentials(settings: Settings) -> tuple[Settings, dict[str, str]]:
    """Embedded mode without configured keys: fresh random keys for this run, printed for the user."""
    issued: dict[str, str] = {}
    changes: dict[str, Any] = {}
    if not settings.storefront_api_keys:
        issued["storefront API key"] = secrets.token_urlsafe(18)
        changes["storefront_api_keys"] = (issued["storefront API key"],)
    if not settings.admin_api_keys:
        issued["admin API key"] = secrets.token_urlsafe(18)
        changes["admin_api_keys"] = (issued["admin API key"],)
    if not settings.webhook_secret:
        issued["webhook secret"] = secrets.token_urlsafe(24)
        changes["webhook_secret"] = issued["webhook secret"]
    return (settings.with_overrides(**changes) if changes else settings), issued


def _app_factory(settings: Settings, seed: bool) -> Callable[[], Any]:
    def load() -> Any:  # runs in the worker, after gevent has patched the process
        from api import create_app
        from inventory import housekeeping
        from inventory.engine import Inventory

        inventory = Inventory.from_settings(settings)
        if settings.redis_url.startswith(MEMORY_URL):
            # No Celery here: persist to the database, expire holds and reconcile in-process; after a
            # restart the empty embedded Redis is rebuilt from the database first.
            housekeeping.start_embedded(inventory)
        if seed:
            seed_demo_products(inventory)
        return create_app(settings, inventory=inventory)

    return load


def _run_gunicorn(options: dict[str, Any], load: Callable[[], Any]) -> None:
    from gunicorn.app.base import BaseApplication

    class FlashstockServer(BaseApplication):
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            return load()

    FlashstockServer().run()


@click.command()
@click.option("--bind", "-b", default=None, help="host:port to listen on [default: BIND or 127.0.0.1:8000].")
@click.option("--workers", "-w", default=None, type=click.IntRange(1, 64),
              help="gevent worker processes [default: WEB_CONCURRENCY or 2; always 1 on memory://].")
@click.option("--seed/--no-seed", default=None,
              help="Create the demo products if missing [default: only on the embedded memory:// Redis].")
def serve(bind: str | None, workers: int | None, seed: bool | None) -> None:
    """Start the HTTP API (gunicorn + gevent) and print the URL of its docs."""
    from api.serving import gunicorn_settings, prepare_metrics_dir

    settings = load_settings()
    settings = settings.with_overrides(metrics_dir=prepare_metrics_dir(settings))
    embedded = settings.redis_url.startswith(MEMORY_URL)
    if bind:
        settings = settings.with_overrides(api_bind=bind)
    if embedded:
        # fakeredis lives in the worker's memory: one process must own all state.
        if workers and workers > 1:
            click.echo("memory:// keeps state in one process: serving with 1 worker.", err=True)
        settings = settings.with_overrides(api_workers=1)
        settings, issued = _with_demo_credentials(settings)
        for label, value in issued.items():
            click.echo(f"{label} for this run: {value}")
    elif workers:
        settings = settings.with_overrides(api_workers=workers)
    seed = embedded if seed is None else seed
    click.echo(f"starting flashstock API on http://{settings.api_bind} "
               f"(redis: {'embedded' if embedded else 'server'}, workers: {settings.api_workers}) "
               f"- docs at http://{settings.api_bind}/docs")
    _run_gunicorn(gunicorn_settings(settings), _app_factory(settings, seed))


COMMANDS = [serve]
