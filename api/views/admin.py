"""Admin: products, stock, open holds per SKU, reconciliation. Admin API key only."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint

from api.auth import ADMIN_SECURITY, require
from api.schemas import AdminProductData, HoldListData, LimitQuery, ProductIn, ReconcileData, ReconcileIn, \
    SaleSwitchData, SaleSwitchIn, StockData, StockIn, WaitlistSummaryData
from api.state import respond, state
from api.parsing import arguments
from api.views.docs import responses
from inventory.errors import ProductNotFound
from inventory.reconcile import run_reconciliation
from inventory.sale_admin import global_paused, set_global_pause

blp = Blueprint("admin", __name__, url_prefix="/v1/admin", description="Operator endpoints (admin API key).")
_product, _stock, _holds, _reconcile = AdminProductData(), StockData(), HoldListData(), ReconcileData()
_waitlist = WaitlistSummaryData()
_switch = SaleSwitchData()
_CONFIG_FIELDS = {"name": "name", "price": "price", "currency": "currency", "per_user_limit": "per_user_limit",
                  "sale_starts_at": "starts_at", "sale_ends_at": "ends_at", "paused": "paused"}


@blp.before_request
def _authenticate() -> None:
    require(state().auth, "admin")


@blp.route("/products/<string:sku>", methods=["GET"])
@responses(blp, 200, AdminProductData, 401, 403, 404, 422, security=ADMIN_SECURITY)
def get_product(sku: str) -> Response:
    """A product with its full stock counters and version."""
    return respond(_product, state().inventory.catalog.get(sku))


@blp.route("/products/<string:sku>", methods=["PUT"])
@responses(blp, 200, AdminProductData, 401, 403, 409, 422, security=ADMIN_SECURITY)
@arguments(blp, ProductIn())
def put_product(args: dict[str, Any], sku: str) -> Response:
    """Create a product or change its data, sale window, pause flag, total stock and stock buckets."""
    catalog = state().inventory.catalog
    config = {_CONFIG_FIELDS[name]: value for name, value in args.items() if name in _CONFIG_FIELDS}
    stock, expected = args.get("stock"), args.get("expected_version")
    try:
        catalog.get(sku)
        exists = True
    except ProductNotFound:
        exists = False
    if exists and stock is not None:
        # Stock first: if it cannot apply (below held + sold, stale version) nothing has changed.
        level = catalog.adjust_stock(sku, set_total=stock, expected_version=expected, reason="admin")
        product = catalog.configure(sku, **config, expected_version=level.version if expected is not None
                                    else None) if config else catalog.get(sku)
    else:
        product = catalog.configure(sku, **config, expected_version=expected)
        if stock is not None:
            catalog.adjust_stock(sku, set_total=stock, reason="admin")
            product = catalog.get(sku)
    if "buckets" in args:
        state().inventory.buckets.split(sku, args["buckets"])
        product = catalog.get(sku)
    return respond(_product, product)


@blp.route("/products/<string:sku>/stock", methods=["POST"])
@responses(blp, 200, StockData, 401, 403, 404, 409, 422, security=ADMIN_SECURITY)
@arguments(blp, StockIn())
def adjust_stock(args: dict[str, Any], sku: str) -> Response:
    """Set the total (`set`) or add/remove units (`add`); open holds and sold units are untouched."""
    level = state().inventory.catalog.adjust_stock(
        sku, set_total=args.get("set"), add=args.get("add"), expected_version=args.get("expected_version"))
    return respond(_stock, level)


@blp.route("/products/<string:sku>/holds", methods=["GET"])
@responses(blp, 200, HoldListData, 401, 403, 404, 422, security=ADMIN_SECURITY)
@arguments(blp, LimitQuery(), location="query")
def list_holds(args: dict[str, Any], sku: str) -> Response:
    """Open reservations holding this SKU, soonest expiry first."""
    catalog = state().inventory.catalog
    catalog.get(sku)  # 404 for an unknown SKU rather than an empty list
    return respond(_holds, catalog.holds(sku, limit=args["limit"]))


@blp.route("/products/<string:sku>/waitlist", methods=["GET"])
@responses(blp, 200, WaitlistSummaryData, 401, 403, 404, 422, security=ADMIN_SECURITY)
@arguments(blp, LimitQuery(), location="query")
def waitlist_summary(args: dict[str, Any], sku: str) -> Response:
    """How many buyers wait for how many units, what is set aside for them, and the head of the queue."""
    inv = state().inventory
    inv.catalog.get(sku)  # 404 for an unknown SKU
    return respond(_waitlist, inv.waitlists.summary(sku, limit=min(args["limit"], 100)))


@blp.route("/sale", methods=["GET"])
@responses(blp, 200, SaleSwitchData, 401, 403, security=ADMIN_SECURITY)
def get_sale_switch() -> Response:
    """The global sale switch: whether every sale is paused."""
    return respond(_switch, {"paused": global_paused(state().inventory)})


@blp.route("/sale", methods=["PUT"])
@responses(blp, 200, SaleSwitchData, 401, 403, 422, security=ADMIN_SECURITY)
@arguments(blp, SaleSwitchIn())
def set_sale_switch(args: dict[str, Any]) -> Response:
    """Pause (or resume) every sale at once, SKUs created later included; per-SKU pauses are kept."""
    paused = set_global_pause(state().inventory, args["paused"])
    return respond(_switch, {"paused": paused})


@blp.route("/reconcile", methods=["POST"])
@responses(blp, 200, ReconcileData, 401, 403, 422, security=ADMIN_SECURITY)
@arguments(blp, ReconcileIn())
def reconcile(args: dict[str, Any]) -> Response:
    """Compare Redis with the database for changed SKUs (`full`: every SKU); with `repair`, fix drift."""
    st = state()
    report = run_reconciliation(st.inventory, st.sessions(), repair=args["repair"], full=args["full"])
    return respond(_reconcile, report.as_dict())
