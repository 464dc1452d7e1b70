"""Operations: liveness, readiness (Redis and database reachable), Prometheus metrics, docs assets."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, send_from_directory
from sqlalchemy import text
from swagger_ui_bundle import swagger_ui_path

from api import metrics
from api.errors import REDIS_DOWN
from api.state import state

blp = Blueprint("ops", __name__)


@blp.get("/livez")
def livez() -> Response:
    """The process is up (no dependencies checked)."""
    return jsonify({"data": {"status": "ok"}})


@blp.get("/readyz")
def readyz() -> Response:
    """Ready to serve: Redis answers PING and the database answers SELECT 1."""
    st = state()
    checks: dict[str, str] = {}
    try:
        st.inventory.redis.ping()
        checks["redis"] = "ok"
    except REDIS_DOWN as error:
        checks["redis"] = f"unavailable: {type(error).__name__}"
    try:
        with st.engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # any driver error means "not ready"
        checks["database"] = f"unavailable: {type(error).__name__}"
    if all(value == "ok" for value in checks.values()):
        return jsonify({"data": {"status": "ok", "checks": checks}})
    response = jsonify({"error": {"code": "unavailable", "message": "A dependency is unreachable.",
                                  "details": checks}})
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response


@blp.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus exposition: requests, latency, reservations by outcome, stock per SKU."""
    st = state()
    body, content_type = metrics.render(st.inventory, st.settings.metrics_dir)
    return Response(body, content_type=content_type)


@blp.get("/docs/assets/<path:filename>")
def docs_assets(filename: str) -> Response:
    """Swagger UI files shipped with the swagger-ui-bundle package (no CDN)."""
    return send_from_directory(swagger_ui_path, filename, max_age=86_400)
