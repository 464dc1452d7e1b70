"""inventory/soldout.py: the listener starts once per process, and again in a forked child."""

from __future__ import annotations

import os
from typing import Any

from inventory import soldout
from inventory.soldout import SoldOutCache, SoldOutListener


def test_the_listener_starts_once_per_process_and_again_after_a_fork(monkeypatch):
    started: list[Any] = []

    class Thread:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

        def start(self) -> None:
            started.append(self.kwargs)

    monkeypatch.setattr(soldout.threading, "Thread", Thread)
    listener = SoldOutListener(SoldOutCache(1000, lambda sku: sku), lambda: None, "p*")
    listener.ensure_started()
    listener.ensure_started()
    assert len(started) == 1
    soldout._forked()  # what os.fork() runs in the child
    listener.ensure_started()
    listener.ensure_started()
    assert len(started) == 2
    listener.stop()
    listener.ensure_started()
    assert len(started) == 3


def test_os_fork_counts_in_the_child_only():
    before = soldout._process["forks"]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports its count and leaves at once, without pytest's teardown
        os.write(write, str(soldout._process["forks"]).encode())
        os._exit(0)
    os.close(write)
    assert int(os.read(read, 64)) == before + 1
    os.close(read)
    os.waitpid(child, 0)
    assert soldout._process["forks"] == before
