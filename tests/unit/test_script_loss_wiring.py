"""The API and the workers run the recovery check before loading scripts again (RECOVERY_ON_SCRIPT_LOSS)."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from api.app import create_app
from inventory import Inventory, Settings
from sync import runtime


@pytest.mark.parametrize("enabled", [True, False])
def test_the_api_and_the_workers_install_the_check_as_configured(enabled: bool, monkeypatch: Any) -> None:
    settings = Settings(key_prefix="wiring", recovery_on_script_loss=enabled)
    inv = Inventory(fakeredis.FakeRedis(server=fakeredis.FakeServer()), settings, None)
    create_app(settings, inventory=inv, on_checkout=None)
    assert (inv.ctx.scripts.on_cache_lost is not None) is enabled

    monkeypatch.setenv("RECOVERY_ON_SCRIPT_LOSS", "true" if enabled else "false")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    runtime.reset()
    try:
        assert (runtime.inventory().ctx.scripts.on_cache_lost is not None) is enabled
    finally:
        runtime.reset()


def test_the_setting_reads_from_the_environment(monkeypatch: Any) -> None:
    assert Settings().recovery_on_script_loss is True
    monkeypatch.setenv("RECOVERY_ON_SCRIPT_LOSS", "false")
    assert Settings.from_env().recovery_on_script_loss is False
