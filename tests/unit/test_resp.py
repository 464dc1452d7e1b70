"""inventory/resp.py: CompactPacker packs every command into the bytes redis-py's own packer makes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis._parsers.encoders import Encoder
from redis.connection import PythonRespSerializer
from redis.exceptions import DataError

from inventory.config import Settings
from inventory.resp import BUFFER_CUTOFF, CompactPacker
from inventory.store import connect_redis

ENCODER = Encoder("utf-8", "strict", False)
REDIS_PY = PythonRespSerializer(BUFFER_CUTOFF, ENCODER.encode)
COMPACT = CompactPacker(ENCODER)

names = st.one_of(st.sampled_from(["EVALSHA", "HGETALL", "SCRIPT LOAD", "CONFIG GET", "set"]),
                  st.sampled_from([b"EVALSHA", b"CLIENT SETNAME"]), st.text(min_size=1, max_size=12),
                  st.sampled_from(["\r", "A\tB", "x\x0bY", "é", "EVALSHA_RO"]))
values = st.one_of(st.text(max_size=40), st.binary(max_size=40), st.integers(), st.floats(allow_nan=False),
                   st.booleans(), st.none(), st.binary(min_size=3000, max_size=7000).map(bytearray),
                   st.text(min_size=3000, max_size=7000), st.binary(max_size=20).map(memoryview))


def _packed(packer: PythonRespSerializer, args: tuple) -> bytes | type:
    try:
        return b"".join(bytes(piece) for piece in packer.pack(*args))
    except DataError:
        return DataError


@given(names, st.lists(values, max_size=30))
def test_every_command_packs_to_what_redis_py_packs(name, arguments):
    args = (name, *arguments)
    assert _packed(COMPACT, args) == _packed(REDIS_PY, args)


def test_a_reserve_call_takes_the_shortcut_in_one_buffer():
    args = ("EVALSHA", "6" * 40, 2, "fs:{p:1}:res:r_x", "fs:{p:1}:sku:A:stock", "r_x", "user-1", "", 120000, 1)
    packed = COMPACT.pack(*args)
    assert len(packed) == 1 and packed[0] == b"".join(REDIS_PY.pack(*args))
    assert packed[0].startswith(b"*10\r\n$7\r\nEVALSHA\r\n$40\r\n")


@pytest.mark.parametrize("value", [True, 1.5, None, bytearray(b"x"), memoryview(b"x"), "x" * (BUFFER_CUTOFF + 1)])
def test_anything_but_plain_str_bytes_and_int_or_a_large_command_goes_to_redis_pys_packer(value, monkeypatch):
    calls = []
    monkeypatch.setattr(PythonRespSerializer, "pack", lambda self, *args: calls.append(args) or [b""])
    COMPACT.pack("SET", "k", value)
    assert calls == [("SET", "k", value)]


def test_the_single_node_pool_packs_every_connections_commands_with_the_compact_packer():
    redis = connect_redis(Settings.from_env(redis_url="redis://127.0.0.1:9/0?encoding=latin-1"))
    packer = redis.connection_pool.connection_kwargs["command_packer"]
    assert isinstance(packer, CompactPacker)
    assert packer.pack("SET", "k", "é") == [b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n\xe9\r\n"]  # the URL's encoding
    assert redis.connection_pool.make_connection()._command_packer is packer  # noqa: SLF001 - what redis-py uses
