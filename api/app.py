"""The API app factory: settings, core, extensions and blueprints wired together."""

from __future__ import annotations

import importlib
from typing import Any

from flask import Flask
from flask_smorest import Api

from api import errors, observability, ratelimit
from api.auth import SECURITY_SCHEMES, Authenticator
from api.dashboard_auth import DashboardSessions
from api.hotpath import FastReserve
from api.idempotency import IdempotencyStore
from api.schemas import ErrorOut
from api.state import ApiState, CheckoutHook, soldout_listener
from api.views import admin, dashboard, ops, orders, payments, products, reservations, waitlist
from api.webhooks import WebhookVerifier
from inventory.config import Settings
from inventory.engine import Inventory
from inventory.recovery import check_before_loading

MAX_BODY_BYTES = 64 * 1024
_UNSET: Any = object()


class FlashstockApi(Api):
    """flask-smorest's Api with our error envelope documented and used for HTTP errors."""

    ERROR_SCHEMA = ErrorOut

    def handle_http_exception(self, error):  # noqa: ANN001, ANN201 - flask-smorest signature
        return errors.handle_http_exception(error)


def default_checkout_hook() -> CheckoutHook | None:
    """`sync.tasks.notify_checkout` when the sync layer provides it (prompt persistence), else None."""
    try:
        tasks = importlib.import_module("sync.tasks")
    except ImportError:
        return None
    notify = getattr(tasks, "notify_checkout", None)
    return (lambda order: notify(order.id)) if callable(notify) else None


def create_app(settings: Settings | None = None, *, inventory: Inventory | None = None,
               on_checkout: CheckoutHook | None = _UNSET) -> Flask:
    """The API app for these settings (default: from the environment) over `inventory` (default: new)."""
    settings = settings or (inventory.settings if inventory is not None else Settings.from_env())
    inventory = inventory or Inventory.from_settings(settings)
    app = Flask("api")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_TITLE="flashstock",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {"description": "Flash-sale inventory: live stock, atomic holds, checkout, payments. "
                                    "Success bodies are {\"data\": ...}; errors are "
                                    "{\"error\": {\"code\", \"message\", \"details\"}}."},
            "components": {"securitySchemes": SECURITY_SCHEMES},
        },
    )
    observability.configure_logging(settings.log_level)
    observability.init_app(app)  # first: request ids and the log line wrap everything else
    limits = ratelimit.init_app(app, settings, inventory.redis)
    auth = Authenticator(settings)
    app.extensions["flashstock"] = ApiState(
        settings=settings,
        inventory=inventory,
        auth=auth,
        idempotency=IdempotencyStore(inventory.redis, inventory.keys, settings.idempotency_ttl_seconds),
        webhooks=WebhookVerifier(settings.webhook_secret.split(","), settings.webhook_tolerance_seconds),
        limits=limits,
        on_checkout=default_checkout_hook() if on_checkout is _UNSET else on_checkout,
        soldout=soldout_listener(inventory),
    )
    if settings.recovery_on_script_loss:
        state: ApiState = app.extensions["flashstock"]
        inventory.ctx.scripts.on_cache_lost = lambda: check_before_loading(inventory, state.sessions())
    api = FlashstockApi(app)
    for module in (products, waitlist, reservations, orders, payments, admin):
        api.register_blueprint(module.blp)
    app.register_blueprint(ops.blp)
    app.extensions["flashstock_dashboard"] = sessions = DashboardSessions(settings, auth)
    sessions.init_app(app, settings)
    app.register_blueprint(dashboard.blp)
    errors.init_app(app)
    if settings.api_fast_path:
        app.wsgi_app = FastReserve(app, app.wsgi_app)  # type: ignore[method-assign]
    return app
