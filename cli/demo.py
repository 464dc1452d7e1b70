"""`flashstock demo`: a flash sale through the core on the configured (default: embedded) Redis."""

from __future__ import annotations

import click

from cli.common import emit, json_option, open_inventory
from inventory.demo import run_demo_sale


@click.command()
@click.option("--stock", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--buyers", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--threads", default=32, show_default=True, type=click.IntRange(1, 512))
@json_option
def demo(stock: int, buyers: int, threads: int, as_json: bool) -> None:
    """Run a short flash sale: concurrent buyers race for one hot SKU; print what happened."""
    report = run_demo_sale(open_inventory(), stock=stock, buyers=buyers, threads=threads)
    if not as_json:
        click.echo(f"{buyers} buyers raced for {stock} units of {report.sku} in {report.seconds:.2f}s")
    emit(report, as_json=as_json)


COMMANDS = [demo]
