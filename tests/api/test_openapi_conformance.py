"""Schemathesis against /openapi.json: generated requests to every storefront and admin operation get
no 5xx and no response that violates the spec (status codes, content types, bodies, headers).

One test id per operation (pytest parametrization over the spec's operations), so each is reported and
counted on its own; each draws valid and invalid requests from Schemathesis's strategy for it.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest
import sqlalchemy as sa
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api import create_app
from inventory import Settings
from tests.api.conftest import ADMIN, SF, with_api_settings
from inventory.migrations import upgrade
from tests.conftest import DATABASE_URL, REDIS_URL, delete_prefix, server_unavailable
from tests.helpers import make_product

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]

# Schemathesis parametrizes at collection time, so the app exists then; it connects to Redis lazily.
PREFIX = f"fstest:{uuid.uuid4().hex[:12]}"
APP = create_app(with_api_settings(Settings(key_prefix=PREFIX, redis_url=REDIS_URL)), on_checkout=None)
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)
OPERATIONS = [result.ok() for result in schema.get_all_operations()]


@pytest.fixture(scope="module", autouse=True)
def _state(redis_server) -> Iterator[None]:
    """Products in Redis and a migrated Postgres schema (admin reconciliation) for this module."""
    state = APP.extensions["flashstock"]
    for sku in ("HOT", "A", "0"):  # a few products so that generated SKUs sometimes exist
        make_product(state.inventory, sku, stock=1000)
    admin = sa.create_engine(DATABASE_URL, poolclass=sa.pool.NullPool)
    schema_name = PREFIX.replace("fstest:", "fstest_")
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema_name}"'))
    except sa.exc.OperationalError as error:
        server_unavailable("PostgreSQL", error)
    url = f"{DATABASE_URL}?options=-csearch_path%3D{schema_name}"
    upgrade(url)
    state.settings = state.settings.with_overrides(database_url=url)
    try:
        yield
    finally:
        if state._engine is not None:
            state._engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema_name}" CASCADE'))
        admin.dispose()
        delete_prefix(redis_server, PREFIX)


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_operation_conforms_to_the_spec(operation, data):
    case = data.draw(st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                               operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)))
    headers = ADMIN if case.path.startswith("/v1/admin") else SF
    case.call_and_validate(headers=headers, checks=CHECKS)
