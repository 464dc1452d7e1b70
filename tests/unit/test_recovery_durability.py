"""The start-up warning about Redis persistence: AOF off warns, CONFIG refused is tolerated."""

from __future__ import annotations

import logging
from typing import Any

import fakeredis
import pytest
from redis.exceptions import ResponseError

from inventory import Inventory, Settings
from inventory.recovery import redis_durability, warn_if_not_durable


class FakeConfig:
    def __init__(self, values: dict[str, str] | None) -> None:
        self.values = values

    def config_get(self, name: str) -> dict[str, Any]:
        if self.values is None:
            raise ResponseError("unknown command 'CONFIG'")
        return {name: self.values[name]}


@pytest.mark.parametrize("values,expected", [
    ({"appendonly": "no", "appendfsync": "everysec"}, "no-aof"),
    ({"appendonly": "yes", "appendfsync": "everysec"}, "aof-everysec"),
    ({"appendonly": "yes", "appendfsync": "always"}, "aof-always"),
    (None, "unknown"),
])
def test_durability_is_read_from_config_get_or_unknown_when_refused(values: dict | None, expected: str) -> None:
    assert redis_durability(FakeConfig(values)) == expected


def _inv(client: Any) -> Inventory:
    inv = Inventory(fakeredis.FakeRedis(), Settings(key_prefix="d", redis_url="redis://example:6379/0"))
    inv.ctx.redis = client
    return inv


def test_start_up_warns_when_redis_runs_without_aof(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert warn_if_not_durable(_inv(FakeConfig({"appendonly": "no", "appendfsync": "everysec"}))) == "no-aof"
    assert "WITHOUT AOF" in caplog.text


def test_start_up_tolerates_a_server_that_refuses_config(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert warn_if_not_durable(_inv(FakeConfig(None))) == "unknown"
    assert "cannot verify" in caplog.text


def test_start_up_is_quiet_about_aof_everysec(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert warn_if_not_durable(_inv(FakeConfig({"appendonly": "yes", "appendfsync": "everysec"}))) \
            == "aof-everysec"
    assert caplog.text == ""
