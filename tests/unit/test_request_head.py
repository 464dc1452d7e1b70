"""api/request_head.py: request fields read as http.client reads them, minus what RFC 9112 refuses."""

from __future__ import annotations

import io
from http.client import parse_headers

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api import request_head
from api.request_head import environ_fields, read_head

NAME = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^`|~", min_size=1, max_size=20)
VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)


def _head(lines: list[bytes], end: bytes = b"\r\n") -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(b"".join(lines) + end + b"BODY"))


@given(st.lists(st.tuples(NAME, VALUE), max_size=12).filter(
    lambda fields: sum(name.lower() == "content-length" for name, _ in fields) <= 1))
def test_valid_heads_read_as_http_client_reads_them(fields: list[tuple[str, str]]) -> None:
    raw = [f"{name}: {value}\r\n".encode("latin-1") for name, value in fields]
    ours, theirs = read_head(_head(raw)), parse_headers(_head(raw))
    assert ours.status == ""
    assert ours.items() == [(name, value.strip(" \t")) for name, value in theirs.items()]
    for name, _ in fields:
        assert ours.get(name.upper()) == theirs.get(name)
    assert ours.get("absent", "dflt") == "dflt"


def test_the_reader_stops_at_the_blank_line_and_leaves_the_body() -> None:
    rfile = _head([b"Host: a\r\n", b"Content-Length: 4\r\n"])
    head = read_head(rfile)
    assert head.items() == [("Host", "a"), ("Content-Length", "4")]
    assert rfile.read() == b"BODY"


def test_bare_lf_line_ends_are_read_too() -> None:
    assert read_head(_head([b"Host: a\n", b"X-A:  b \t\n"], end=b"\n")).items() == [("Host", "a"), ("X-A", "b")]


@pytest.mark.parametrize("line, status", [
    (b"Host : a\r\n", "Invalid header line"),          # whitespace before the colon (RFC 9112 5.1)
    (b" folded continuation\r\n", "Invalid header line"),  # obsolete line folding (RFC 9112 5.2)
    (b"\tfolded\r\n", "Invalid header line"),
    (b"no colon here\r\n", "Invalid header line"),
    (b": no name\r\n", "Invalid header line"),
    (b"Bad(name): x\r\n", "Invalid header line"),
    (b"X-A: a\rb\r\n", "Invalid header value"),
    (b"X-A: a\0b\r\n", "Invalid header value"),
    (b"X-A: " + b"a" * 70000 + b"\r\n", "Line too long"),
])
def test_malformed_lines_give_a_status(line: bytes, status: str) -> None:
    assert read_head(_head([b"Host: a\r\n", line])).status == status


def test_too_many_fields_and_conflicting_lengths_give_a_status() -> None:
    assert read_head(_head([b"X-%d: v\r\n" % n for n in range(101)])).status == "Too many headers"
    assert read_head(_head([b"X-%d: v\r\n" % n for n in range(100)])).status == ""
    assert read_head(_head([b"Content-Length: 4\r\n", b"content-length: 5\r\n"])).status == \
        "Conflicting Content-Length"
    assert read_head(_head([b"Content-Length: 4\r\n", b"content-length: 4\r\n"])).status == ""


def test_deleting_a_field_removes_every_copy_whatever_its_case() -> None:
    head = read_head(_head([b"Content-Length: 4\r\n", b"Transfer-Encoding: chunked\r\n", b"content-length: 4\r\n"]))
    del head["CONTENT-LENGTH"]
    assert head.items() == [("Transfer-Encoding", "chunked")]
    assert head.get("content-length") is None and head.get("transfer-encoding") == "chunked"


def test_environ_fields_follow_pywsgi() -> None:
    head = read_head(_head([b"Host: a\r\n", b"Content-Type: application/json\r\n", b"Content-Length: 2\r\n",
                            b"X-Api-Key: k\r\n", b"X_Api_Key: spoof\r\n", b"Accept: a\r\n", b"accept: b\r\n"]))
    assert list(environ_fields(head)) == [("HTTP_HOST", "a"), ("HTTP_X_API_KEY", "k"), ("HTTP_ACCEPT", "a"),
                                          ("HTTP_ACCEPT", "b")]
    assert head.typeheader == "application/json" and head.getheader("content-length") == "2"


class _Unbuffered(io.RawIOBase):
    """A reader with no peek: read_head must take the line-by-line path."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        return self.data.readline(size)

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        return self.data.read(size)


LINE = st.one_of(
    st.tuples(NAME, VALUE).map(lambda f: f"{f[0]}: {f[1]}\r\n".encode("latin-1")),
    st.sampled_from([b"Content-Length: 4\r\n", b"content-length: 5\r\n", b"Host : a\r\n", b" folded\r\n",
                     b"X-A: a\rb\r\n", b"X-A: a\0b\r\n", b"X-B:\t v \t\r\n", b"X-C:\r\n", b"Bare: lf\n",
                     b"no colon\r\n", b": x\r\n"]),
    st.binary(max_size=30).map(lambda b: b + b"\r\n"),
)


@given(st.lists(LINE, max_size=8), st.sampled_from([b"\r\n", b"\n", b""]))
def test_the_buffered_head_reads_as_the_line_by_line_reader_does(lines: list[bytes], end: bytes) -> None:
    data = b"".join(lines) + end + b"BODY"
    buffered, unbuffered = io.BufferedReader(io.BytesIO(data)), _Unbuffered(data)
    fast, slow = read_head(buffered), read_head(unbuffered)
    assert (fast.status, fast.items()) == (slow.status, slow.items())
    if not fast.status:
        assert buffered.read() == unbuffered.read()


def test_a_head_in_the_buffer_is_read_without_the_line_by_line_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request_head, "_read_head_by_lines", None)
    rfile = _head([b"Host: a\r\n", b"X-Api-Key:  k \r\n", b"Content-Length: 4\r\n"])
    assert read_head(rfile).items() == [("Host", "a"), ("X-Api-Key", "k"), ("Content-Length", "4")]
    assert rfile.read() == b"BODY"
    assert read_head(io.BufferedReader(io.BytesIO(b"\r\nBODY"))).items() == []


@pytest.mark.timeout(20)
@pytest.mark.parametrize("line", [b"X-A: " + b" " * 8000 + b"\0\r\n", b"X-A: " + b" \t" * 4000 + b"x\r\n",
                                  b"X-A:" + b" " * 8000 + b"\r\n", b"X-A: a" + b" " * 8000 + b"\rb\r\n"])
def test_long_runs_of_blanks_are_read_in_linear_time(line: bytes) -> None:
    """A lazy value before optional blanks took 92 s on the first line (quadratic backtracking)."""
    data = b"Host: a\r\n" + line + b"\r\nBODY"
    fast = read_head(io.BufferedReader(io.BytesIO(data), buffer_size=16384))
    slow = read_head(_Unbuffered(data))
    assert (fast.status, fast.items()) == (slow.status, slow.items())
