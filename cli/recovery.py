"""`flashstock rebuild`: rebuild Redis from Postgres for some SKUs or all (the recovery path)."""

from __future__ import annotations

import click

from cli.common import domain_errors, emit, json_option, load_settings, open_inventory, open_sessions
from inventory.buckets import is_internal, is_quota, product_of
from inventory.errors import InvalidArgument, InventoryError, ProductNotFound
from inventory.ledger import all_skus
from inventory.recovery import rebuild_from_postgres
from inventory.sale_admin import live_skus


class SaleLive(InventoryError):
    """Rebuilding counters under a running sale would race buyers; pause first."""

    code = "sale_live"


@click.command()
@click.argument("skus", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every SKU Postgres knows (also starts a new Redis epoch).")
@json_option
@domain_errors
def rebuild(skus: tuple[str, ...], all_: bool, as_json: bool) -> None:
    """Rebuild Redis counters, buyers and open orders of SKUs from Postgres.

    Refused while a target SKU's sale is live: pause it first (`flashstock sale pause`); the rebuilt SKUs
    keep the paused flag they were configured with.
    """
    if bool(skus) == all_:
        raise InvalidArgument("Give SKUs or --all (not both).", field="sku")
    settings = load_settings()
    inv = open_inventory(settings)
    sessions = open_sessions(settings.database_url)
    with sessions() as session:
        known = set(all_skus(session))
    targets = sorted(known | set(inv.catalog.all_skus())) if all_ else list(dict.fromkeys(skus))
    unknown = [sku for sku in targets if sku not in known]
    targets += sorted(k for k in known if is_internal(k) and product_of(k) in targets and k not in targets)
    if unknown and not all_:
        raise ProductNotFound("Postgres has no record of these SKUs; nothing to rebuild them from.", skus=unknown)
    running = live_skus(inv, [sku for sku in targets if not is_quota(sku)])  # a quota sells nothing itself
    if running:
        raise SaleLive("The sale is live for these SKUs; pause them first (flashstock sale pause).",
                       skus=running[:20], count=len(running))
    report = rebuild_from_postgres(inv, sessions, None if all_ else targets)
    result = {"skus": len(report.skus), "rebuilt": len(report.rebuilt), "failed": list(report.failed),
              "orders_restored": report.orders_restored, "epoch": report.epoch or "(unchanged)"}
    emit(result, as_json=as_json, title="rebuilt from Postgres")
    if report.failed:
        click.echo(f"error: rebuild_incomplete: {len(report.failed)} SKU(s) left paused: held + sold exceed the "
                   "persisted total", err=True)
        raise SystemExit(2)


COMMANDS = [rebuild]
