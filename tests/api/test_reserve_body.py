"""msgspec's one-pass check of the reserve body accepts only what ReserveIn accepts, with the same result."""

from __future__ import annotations

import json
from typing import Any

import marshmallow as ma
import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from api.reserve_body import fast_reserve_args
from api.schemas import ReserveIn

SCHEMA = ReserveIn()
JSON = "application/json"

_names = st.sampled_from(["HOT", "A", "sku-1", "a.b_c", "x" * 64, "9"])
_ints = st.one_of(st.integers(1, 5), st.sampled_from([86_400, 1_000_000]))
_odd = st.one_of(st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False),
                 st.sampled_from([1.0, 0.0, "1", [], {}, "alice@x.io", "x" * 65, "x" * 129, "", " HOT", "HOT\n",
                                  "-A", "É", "HOT\u0000", "ab/c", 2**63 - 1]),
                 st.sampled_from([0, -1, 1_000_001, 86_401]),  # just past each bound
                 st.integers(-(2**63), 2**63 - 1), st.integers(-2, 2))


@st.composite
def _bodies(draw: Any) -> Any:
    """Mostly well-formed bodies (so msgspec accepts many), each with at most one odd part."""
    items: list[Any] = draw(st.lists(st.fixed_dictionaries({"sku": _names, "qty": _ints}), max_size=3))
    body: dict[str, Any] = {"items": items}
    if draw(st.booleans()):
        body["user_id"] = draw(st.one_of(_names, st.just("alice@x.io")))
    if draw(st.booleans()):
        body["ttl_seconds"] = draw(_ints)
    odd = draw(st.sampled_from(["none", "none", "sku", "qty", "item", "field", "extra", "item_extra",
                                "items", "body", "many", "duplicate"]))
    if odd in ("sku", "qty", "item_extra", "item") and items:
        index = draw(st.integers(0, len(items) - 1))
        if odd == "item":
            items[index] = draw(_odd)
        else:
            items[index][{"sku": "sku", "qty": "qty", "item_extra": "price"}[odd]] = draw(_odd)
    elif odd == "field":
        body[draw(st.sampled_from(["user_id", "ttl_seconds"]))] = draw(_odd)
    elif odd == "extra":
        body[draw(st.sampled_from(["extra", "Items", "user"]))] = draw(_odd)
    elif odd == "items":
        body["items"] = draw(_odd)
    elif odd == "body":
        return draw(_odd)
    elif odd == "duplicate" and items:
        items.append(dict(items[0]))
    elif odd == "many":
        body["items"] = [{"sku": f"S{i}", "qty": 1} for i in range(draw(st.integers(49, 52)))]
    return body


def _marshmallow(raw: bytes) -> Any:
    try:
        return SCHEMA.load(orjson.loads(raw))
    except (ma.ValidationError, orjson.JSONDecodeError) as error:
        return ("refused", type(error).__name__)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies())
@example(body={"items": [{"sku": "HOT", "qty": 1}, {"sku": "HOT", "qty": 2}], "user_id": "a"})
@example(body={"items": [{"sku": "HOT", "qty": True}]})
@example(body={"items": [{"sku": "HOT", "qty": 1.0}]})
@example(body={"items": [], "user_id": "a"})
@example(body={"items": [{"sku": "A", "qty": 1}] * 51})
@example(body={"items": [{"sku": "HOT", "qty": 1}], "user_id": None})
@example(body={"items": [{"sku": "HOT", "qty": 1_000_001}]})
@example(body={"items": [{"sku": "HOT", "qty": 1}], "ttl_seconds": 0})
@example(body={"items": [{"sku": "HOT", "qty": 1}], "ttl_seconds": 86_401})
@example(body={"items": [{"sku": "HOT", "qty": 1}], "user_id": "x" * 129})
def test_what_msgspec_accepts_marshmallow_accepts_identically(body):
    raw = orjson.dumps(body)
    fast = fast_reserve_args(raw, JSON)
    if fast is not None:
        assert _marshmallow(raw) == fast
    event("msgspec accepted" if fast is not None else "left to marshmallow")


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=80) | st.sampled_from([
    b'{"items":[{"sku":"HOT","qty":1}],"items":[{"sku":"B","qty":2}]}',
    b'{"items":[{"sku":"HOT","qty":1,"qty":2}]}',
    b'\xef\xbb\xbf{"items":[{"sku":"HOT","qty":1}]}',
    b'{"items":[{"sku":"H\\u004fT","qty":1}]}',
    b'{"items":[{"sku":"HOT","qty":1e0}]}',
    b'{"items":[{"sku":"HOT","qty":1}]}\n ',
    b'{"items":[{"sku":"HOT","qty":1}]} {}',
    b'{"items":[{"sku":"HOT","qty":-0}]}',
]))
def test_raw_bytes_msgspec_accepts_decode_the_same_with_orjson(raw):
    fast = fast_reserve_args(raw, JSON)
    if fast is not None:
        assert _marshmallow(raw) == fast


@pytest.mark.parametrize("body", [
    {"items": [{"sku": "HOT", "qty": 1}], "user_id": "user-1"},
    {"items": [{"sku": "HOT", "qty": 1}]},
    {"items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1_000_000}], "user_id": "u@x.io", "ttl_seconds": 30},
])
def test_the_common_valid_bodies_take_the_fast_path(body):
    raw = json.dumps(body).encode()
    assert fast_reserve_args(raw, JSON) == SCHEMA.load(body)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json; charset=utf-8",
                                          "application/merge-patch+json"])
def test_other_media_types_are_left_to_the_full_parser(content_type):
    assert fast_reserve_args(b'{"items":[{"sku":"HOT","qty":1}]}', content_type) is None

