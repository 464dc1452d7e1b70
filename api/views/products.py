"""Storefront product reads: live availability from Redis only (no database on this path)."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint

from api.auth import STOREFRONT_SECURITY, require
from api.parsing import arguments
from api.schemas import ProductData, ProductListData, ProductsQuery
from api.state import respond, state
from api.views.docs import responses

blp = Blueprint("products", __name__, url_prefix="/v1/products", description="Storefront catalogue.")
_one, _many = ProductData(), ProductListData()


@blp.before_request
def _authenticate() -> None:
    require(state().auth, "storefront", "user")


@blp.route("", methods=["GET"])
@responses(blp, 200, ProductListData, 401, 403, 422, security=STOREFRONT_SECURITY)
@arguments(blp, ProductsQuery(), location="query")
def list_products(args: dict[str, Any]) -> Response:
    """Products in SKU order with live availability; page with `after`."""
    products = state().inventory.catalog.list(after=args["after"], limit=args["limit"])
    next_after = products[-1].sku if len(products) == args["limit"] else None
    return respond(_many, products, meta={"next_after": next_after})


@blp.route("/<string:sku>", methods=["GET"])
@responses(blp, 200, ProductData, 401, 403, 404, 422, security=STOREFRONT_SECURITY)
def get_product(sku: str) -> Response:
    """One product with live availability and sale status."""
    return respond(_one, state().inventory.catalog.get(sku))
