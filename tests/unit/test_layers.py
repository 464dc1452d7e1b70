"""The domain core never imports its adapters (api, sync, cli) or their frameworks (STYLE.md, Layers)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"api", "sync", "cli", "flask", "flask_smorest", "flask_limiter", "celery", "click", "marshmallow"}


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module name the code imports: import statements, and importlib/__import__ calls with a literal."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__", "find_spec"):
                found.append((node.lineno, node.args[0].value))
    return found


def test_no_module_under_inventory_imports_an_adapter_or_its_framework():
    modules = sorted((ROOT / "inventory").rglob("*.py"))
    assert len(modules) > 20
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in modules for line, name in _imported(ast.parse(path.read_text(), str(path)))
                 if name.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_the_check_sees_static_and_dynamic_imports():
    code = "import flask\nfrom sync.app import app\nimport importlib\nimportlib.import_module('cli.serve')\n"
    assert [name for _, name in _imported(ast.parse(code))] == ["flask", "sync.app", "importlib", "cli.serve"]
