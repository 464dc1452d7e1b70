"""A faster packer for redis-py's commands of plain strings, bytes and ints; redis-py's own for the rest."""

from __future__ import annotations

from typing import Any

from redis._parsers.encoders import Encoder
from redis.connection import PythonRespSerializer

BUFFER_CUTOFF = 6000  # redis-py's default: larger commands are sent in pieces, by redis-py's packer


class CompactPacker(PythonRespSerializer):
    """redis-py's pure-Python RESP packer, with a shortcut for the commands flashstock sends all the time.

    A reserve call is EVALSHA with 26 arguments; redis-py's packer encodes each through its Encoder (a
    chain of isinstance checks) and re-joins the whole buffer once per argument: 12 µs per call. A
    command whose name is one word and whose arguments are all str, bytes or int, in all up to
    BUFFER_CUTOFF bytes, is packed here into the identical bytes in less than half the time
    (tests/unit/test_resp.py compares the two); anything else goes to redis-py's packer.
    """

    def __init__(self, encoder: Encoder, buffer_cutoff: int = BUFFER_CUTOFF) -> None:
        super().__init__(buffer_cutoff, encoder.encode)
        self._encoding, self._errors = encoder.encoding, encoder.encoding_errors

    def pack(self, *args: Any) -> list[bytes]:
        """The command as RESP bytes (one buffer, or redis-py's pieces for a large or unusual command)."""
        name = args[0]
        if type(name) is not str or not name.isidentifier():  # 'SCRIPT LOAD': redis-py splits the words
            return super().pack(*args)
        encoding, errors = self._encoding, self._errors
        command = name.encode()  # as redis-py encodes a command name, whatever the encoding setting
        room = self._buffer_cutoff - len(command)
        pieces = [b"*%d\r\n$%d\r\n%b\r\n" % (len(args), len(command), command)]
        for arg in args[1:]:
            kind = type(arg)
            if kind is str:
                data = arg.encode(encoding, errors)
            elif kind is bytes:
                data = arg
            elif kind is int:
                data = b"%d" % arg
            else:  # bool, float, bytearray, memoryview, or a type redis-py refuses
                return super().pack(*args)
            room -= len(data)
            if room < 0:
                return super().pack(*args)
            pieces.append(b"$%d\r\n%b\r\n" % (len(data), data))
        return [b"".join(pieces)]


def compact_packer(encoding: str = "utf-8", encoding_errors: str = "strict") -> CompactPacker:
    """A packer for a pool's connections (redis-py's `command_packer` connection setting)."""
    return CompactPacker(Encoder(encoding, encoding_errors, False))
