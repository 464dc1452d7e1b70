"""`flashstock holds list|release|expire`: inspect and release open reservations."""

from __future__ import annotations

import dataclasses

import click

from cli.common import domain_errors, emit, json_option, open_inventory


@click.group()
def holds() -> None:
    """Open reservations: list a SKU's holds, release one, release every expired one."""


@holds.command("list")
@click.argument("sku")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@domain_errors
def list_(sku: str, limit: int, as_json: bool) -> None:
    """Open holds of SKU, soonest expiry first."""
    inv = open_inventory()
    inv.catalog.get(sku)  # unknown SKU -> product_not_found, not an empty list
    emit(inv.catalog.holds(sku, limit=limit), as_json=as_json,
         columns=["reservation_id", "user_id", "qty", "expires_at"])


@holds.command("release")
@click.argument("reservation_id")
@json_option
@domain_errors
def release(reservation_id: str, as_json: bool) -> None:
    """Release one reservation (its units return to available exactly once)."""
    reservation = open_inventory().reservations.release(reservation_id)
    emit(reservation, as_json=as_json)


@holds.command("expire")
@click.option("--batch-size", default=None, type=click.IntRange(1, 10_000),
              help="Entries of the expiry index per batch, and holds per SKU per call.")
@click.option("--max-batches", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@json_option
@domain_errors
def expire(batch_size: int | None, max_batches: int, as_json: bool) -> None:
    """Give back every hold whose expiry has passed ('expired' counts holds, one per reservation line)."""
    inv = open_inventory()
    result = inv.reservations.expire_due(batch_size=batch_size, max_batches=max_batches)
    result = dataclasses.replace(result, offered=inv.waitlists.serve_all())
    emit(result, as_json=as_json, columns=["expired", "units_returned", "batches", "offered"])


COMMANDS = [holds]
