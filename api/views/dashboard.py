"""The live operations dashboard: sign-in, the page, its JSON data and the pause/resume actions."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request, url_for

from api import metrics
from api.dashboard_auth import DashboardSessions
from api.errors import DATABASE_DOWN, ApiError
from api.state import state
from inventory.operations import LiveOps, PersistedOps, read_live, read_persisted
from inventory.sale_admin import global_paused, set_global_pause, update_sale
from inventory.sale_status import page_of_skus
from inventory.validation import check_sku

blp = Blueprint("dashboard", __name__, url_prefix="/dashboard", static_folder="../static",
                static_url_path="/static")
HOT_SKUS = 5
MAX_SKUS = 200
DB_REFRESH_SECONDS = 5.0
REJECTIONS = ("sold_out", "limit_exceeded", "rate_limited", "sale_not_active")


def sessions() -> DashboardSessions:
    return current_app.extensions["flashstock_dashboard"]


@blp.get("/")
def page() -> Response | str:
    """The dashboard page (signed-out browsers go to the sign-in form)."""
    if not sessions().signed_in():
        return redirect(url_for("dashboard.login_form"), 303)  # type: ignore[return-value]
    return render_template("dashboard/index.html", csrf_token=sessions().csrf_token(),
                           refresh_ms=1500, hot=HOT_SKUS)


@blp.get("/login")
def login_form() -> Response | str:
    """The sign-in form: one admin API key."""
    if sessions().signed_in():
        return redirect(url_for("dashboard.page"), 303)  # type: ignore[return-value]
    return render_template("dashboard/login.html", csrf_token=sessions().csrf_token(), error=None)


@blp.post("/login")
def login() -> Response | tuple[str, int]:
    """Check the key with the API's authenticator and start a session; errors re-show the form."""
    try:
        sessions().check_csrf()
        sessions().sign_in(request.form.get("api_key", ""))
    except ApiError as error:
        status = 403 if error.code in ("csrf_failed", "forbidden") else 401
        return render_template("dashboard/login.html", csrf_token=sessions().csrf_token(),
                               error={"code": error.code, "message": error.message}), status
    return redirect(url_for("dashboard.page"), 303)  # type: ignore[return-value]


@blp.post("/logout")
def logout() -> Response:
    """End the session."""
    sessions().check_csrf()
    sessions().sign_out()
    return redirect(url_for("dashboard.login_form"), 303)  # type: ignore[return-value]


@blp.get("/data")
def data() -> Response:
    """Everything the page shows, read now (database figures at most DB_REFRESH_SECONDS old)."""
    sessions().require()
    st = state()
    limit = _limit(request.args.get("limit", "50"))
    skus = page_of_skus(st.inventory, limit=limit)
    live = read_live(st.inventory, skus)
    layouts = st.inventory.buckets.layouts(skus)
    persisted, db_status = _persisted(skus, {sku: lay.buckets for sku, lay in layouts.items() if lay.split})
    return jsonify({"data": _payload(live, persisted, db_status, metrics.outcome_counts(st.settings.metrics_dir))})


@blp.post("/skus/<string:sku>/<any(pause, resume):action>")
def pause_sku(sku: str, action: str) -> Response:
    """Pause or resume one SKU (the same core call as `flashstock sale pause`)."""
    sessions().require()
    sessions().check_csrf()
    change = update_sale(state().inventory, [check_sku(sku)], paused=action == "pause")[0]
    return jsonify({"data": asdict(change)})


@blp.post("/sale/<any(pause, resume):action>")
def pause_everything(action: str) -> Response:
    """Pause or resume reservations of every SKU at once (the global switch)."""
    sessions().require()
    sessions().check_csrf()
    inv = state().inventory
    set_global_pause(inv, action == "pause")
    return jsonify({"data": {"paused": global_paused(inv)}})


def _limit(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_SKUS:
        raise ApiError("invalid_request", "The request is not valid.",
                       fields={"limit": [f"An integer in 1..{MAX_SKUS}."]})
    return int(raw)


def _persisted(skus: list[str], buckets: dict[str, list[str]]) -> tuple[PersistedOps | None, str]:
    """The database figures, cached briefly per process: every open page polls, the database need not.
    `buckets` names the stock buckets of split SKUs, whose figures are summed into their product's."""
    cache: dict[str, Any] = current_app.extensions.setdefault("flashstock_dashboard_cache", {})
    now = time.monotonic()
    if cache.get("skus") == (skus, buckets) and now - cache.get("at", -1e9) < DB_REFRESH_SECONDS:
        return cache["value"], cache["status"]
    try:
        value, status = read_persisted(state().sessions(), skus, buckets), "ok"
    except DATABASE_DOWN as error:
        value, status = None, f"unavailable: {type(error).__name__}"
    cache.update(skus=(skus, buckets), at=now, value=value, status=status)
    return value, status


def _payload(live: LiveOps, persisted: PersistedOps | None, db_status: str,
             counts: dict[str, dict[str, float]]) -> dict[str, Any]:
    rows = []
    for item in live.skus:
        s = item.status
        totals = persisted.totals.get(s.sku) if persisted else None
        rows.append({
            "sku": s.sku, "state": s.state.value, "total": s.total, "available": s.available, "held": s.held,
            "sold": s.sold, "paid": persisted.paid.get(s.sku, 0) if persisted else None,
            "persisted_total": totals[0] if totals else None, "persisted_sold": totals[1] if totals else None,
            "sell_through": round(s.sold / s.total, 4) if s.total else 0.0,
            "reservations_per_minute": s.reservations_per_minute, "open_holds": s.open_holds,
            "soonest_expiry_ms": item.soonest_expiry_ms, "sale_starts_at": s.sale_starts_at,
            "sale_ends_at": s.sale_ends_at, "version": s.version,
        })
    hot = sorted(rows, key=lambda r: (-r["reservations_per_minute"], -(r["held"] + r["sold"]), r["sku"]))
    reservations = counts["reservations"]
    return {
        "now_ms": live.now_ms,
        "paused_globally": live.paused_globally,
        "skus": rows,
        "hot_skus": [r["sku"] for r in hot[:HOT_SKUS]],
        "counters": {"held": reservations.get("held", 0),
                     "rejections": {reason: reservations.get(reason, 0) for reason in REJECTIONS},
                     "checkouts": counts["checkouts"].get("created", 0)},
        "outbox": asdict(live.outbox),
        "redis_memory": asdict(live.memory),
        "last_reconcile": asdict(persisted.last_reconcile) if persisted and persisted.last_reconcile else None,
        "database": db_status,
    }
