"""flashstock's HTTP API: a thin Flask adapter over the inventory core.

`create_app` imports the app lazily, so `api.serving` (gunicorn hooks) can be imported by the gunicorn
master before prometheus_client is, once PROMETHEUS_MULTIPROC_DIR is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(settings: Any = None, **kwargs: Any) -> "Flask":
    """The API app; see `api.app.create_app`."""
    from api.app import create_app as _create_app

    return _create_app(settings, **kwargs)
