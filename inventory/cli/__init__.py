"""The `flashstock` command line: a thin click layer over the same core functions the API uses."""

from __future__ import annotations

import importlib
import importlib.util

import click

# Command modules; each exposes COMMANDS, a list of click commands/groups to register.
_COMMAND_MODULES = ("demo", "serve", "db", "catalog", "stock", "sale", "status", "holds",
                    "reconcile", "recovery", "worker")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """flashstock: Redis-first inventory for flash sales."""


for _name in _COMMAND_MODULES:
    if importlib.util.find_spec(f"inventory.cli.{_name}") is not None:
        for _command in importlib.import_module(f"inventory.cli.{_name}").COMMANDS:
            main.add_command(_command)
