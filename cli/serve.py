"""`flashstock serve`: the HTTP API under gunicorn + gevent, on the embedded default or real servers.

This module imports only click at load time: `serve` patches the process for gevent before anything
imports redis or ssl (a later patch leaves direct ssl references behind and gevent warns about them).
"""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING, Any, Callable

import click

if TYPE_CHECKING:
    from inventory.config import Settings

# Shell variables the printed `export` line sets; README "Try it" uses the same names.
CREDENTIAL_VARIABLES = {"storefront API key": "STOREFRONT_KEY", "admin API key": "ADMIN_KEY",
                        "webhook secret": "WEBHOOK_SECRET"}


def _patch_gevent() -> None:
    """Make sockets, ssl and threads cooperative before the app and its clients are imported."""
    from gevent import monkey

    monkey.patch_all()


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
        # The Standard Webhooks form, so a provider's SDK takes it as is: whsec_ + base64 of the key bytes.
        issued["webhook secret"] = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        changes["webhook_secret"] = issued["webhook secret"]
    return (settings.with_overrides(**changes) if changes else settings), issued


def _print_credentials(issued: dict[str, str]) -> None:
    """Each issued credential, then one line to paste into another shell (README "Try it" uses it)."""
    for label, value in issued.items():
        click.echo(f"{label} for this run: {value}")
    exports = " ".join(f"{CREDENTIAL_VARIABLES[label]}={value}" for label, value in issued.items())
    click.echo("In another shell (walk-through: README.md, \"Try it\"):\n"
               f"  export {exports}\n"
               "  source .venv/bin/activate   # puts the flashstock CLI on PATH")


def _app_factory(settings: Settings, seed: bool) -> Callable[[], Any]:
    def load() -> Any:  # runs in the worker, after gevent has patched the process
        from api import create_app
        from inventory import housekeeping
        from inventory.demo import seed_demo_products
        from inventory.engine import Inventory
        from inventory.store import MEMORY_URL

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
    _patch_gevent()
    from api.serving import gunicorn_settings, prepare_metrics_dir
    from cli.common import load_settings
    from inventory.store import MEMORY_URL

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
        if issued:
            _print_credentials(issued)
    elif workers:
        settings = settings.with_overrides(api_workers=workers)
    seed = embedded if seed is None else seed
    click.echo(f"starting flashstock API on http://{settings.api_bind} "
               f"(redis: {'embedded' if embedded else 'server'}, workers: {settings.api_workers}) "
               f"- docs at http://{settings.api_bind}/docs")
    _run_gunicorn(gunicorn_settings(settings), _app_factory(settings, seed))


COMMANDS = [serve]
