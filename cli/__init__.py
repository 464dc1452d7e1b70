"""The `flashstock` command line: a thin click layer over the same core functions the API uses."""

from __future__ import annotations

import importlib
import importlib.util

import click

# Command name -> the module that defines it (each module exposes COMMANDS, its click commands/groups).
_COMMAND_MODULES = {
    "demo": "demo", "serve": "serve", "db": "db", "catalog": "catalog", "stock": "stock", "sale": "sale",
    "status": "status", "holds": "holds", "reconcile": "reconcile", "rebuild": "recovery",
    "worker": "worker", "beat": "worker", "waitlist": "waitlist",
}


class _LazyGroup(click.Group):
    """Imports a command's module only when it runs, so `serve` can patch gevent before redis is imported."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, module in _COMMAND_MODULES.items()
                      if importlib.util.find_spec(f"{__name__}.{module}") is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _COMMAND_MODULES.get(cmd_name)
        if module is None or importlib.util.find_spec(f"{__name__}.{module}") is None:
            return None
        commands = importlib.import_module(f"{__name__}.{module}").COMMANDS
        return next((command for command in commands if command.name == cmd_name), None)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """flashstock: Redis-first inventory for flash sales."""
