"""`flashstock waitlist show|leave|serve`: the waitlists of sold-out SKUs."""

from __future__ import annotations

import click

from cli.common import domain_errors, emit, json_option, open_inventory


@click.group()
def waitlist() -> None:
    """Buyers waiting for sold-out SKUs: inspect a queue, take a buyer off it, hand out offers now."""


@waitlist.command("show")
@click.argument("sku")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@json_option
@domain_errors
def show(sku: str, limit: int, as_json: bool) -> None:
    """How many wait for how many units, what is set aside for them, and the head of the queue."""
    inv = open_inventory()
    inv.catalog.get(sku)  # unknown SKU -> product_not_found
    summary = inv.waitlists.summary(sku, limit=limit)
    if as_json:
        emit(summary, as_json=True)
        return
    emit({"sku": summary.sku, "waiting": summary.waiting, "units_wanted": summary.units_wanted,
          "units_set_aside": summary.units_set_aside}, as_json=False)
    emit(list(summary.head), as_json=False, columns=["user_id", "status", "units", "position", "until"])


@waitlist.command("leave")
@click.argument("sku")
@click.argument("user_id")
@json_option
@domain_errors
def leave(sku: str, user_id: str, as_json: bool) -> None:
    """Take USER_ID off SKU's waitlist (an open offer's units pass to the next buyer)."""
    left = open_inventory().waitlists.leave(sku, user_id)
    emit({"sku": sku, "user_id": user_id, "left": left}, as_json=as_json)


@waitlist.command("serve")
@json_option
@domain_errors
def serve(as_json: bool) -> None:
    """Offer set-aside units to waiting buyers on every SKU now (the sweeper does this on its own)."""
    emit({"offered": open_inventory().waitlists.serve_all()}, as_json=as_json)


COMMANDS = [waitlist]
