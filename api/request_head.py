"""A request's header fields, read for gevent's pywsgi handler without the email package.

pywsgi reads a request's fields with `http.client.parse_headers`, which hands them to the generic MIME
parser of the `email` package: 18% of an API worker's samples on a cached sold-out answer (BENCHMARKS.md,
"Issue 13, sixth pass"). HTTP/1.1 fields are simpler than MIME headers (RFC 9112 §5), so they are read
here line by line, with http.client's limits (line length, field count), and the parts of RFC 9112 that
keep one request from being read as two are enforced: no whitespace before the colon, no obsolete line
folding, no CR or NUL in a value, one Content-Length.

A head that is already in the reader's buffer (nearly always: a client sends it in one packet) is
checked and split by two regular expressions in one pass each; anything else (a head split across
packets, bare LF line ends, a malformed line) is read line by line, which also names what is wrong.
"""

from __future__ import annotations

import re
from http.client import _MAXHEADERS, _MAXLINE  # the limits parse_headers enforces
from typing import IO, Iterator

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 9110 §5.6.2 field name
# One well-formed CRLF line; the value keeps its trailing blanks (stripped after). Possessive quantifiers:
# a lazy value followed by optional blanks backtracked quadratically (92 s for one 8 KiB line of spaces
# ending in a NUL), a denial of service in a request head.
_FIELD = rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]++):[ \t]*+([^\r\n\0]*+)\r\n"
FIELDS = re.compile(_FIELD)
WHOLE_HEAD = re.compile(rb"(?:" + _FIELD + rb")*+")


class RequestHead:
    """The fields of one request head: the part of http.client.HTTPMessage that pywsgi uses."""

    __slots__ = ("fields", "status", "_first")

    def __init__(self, fields: list[tuple[str, str]], status: str = "") -> None:
        self.status = status  # non-empty: the head is malformed and pywsgi answers 400
        self._set(fields)

    def _set(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields  # (name, value) in arrival order, names as sent
        self._first: dict[str, str] = {}  # lower-case name -> first value (pywsgi asks ~7 times per request)
        for name, value in fields:
            self._first.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a field (case-insensitive name), like email.message.Message.get."""
        return self._first.get(name.lower(), default)

    getheader = get

    def __delitem__(self, name: str) -> None:
        wanted = name.lower()
        self._set([(field, value) for field, value in self.fields if field.lower() != wanted])

    def items(self) -> list[tuple[str, str]]:
        return list(self.fields)

    @property
    def typeheader(self) -> str | None:
        return self.get("content-type")


def read_head(rfile: IO[bytes]) -> RequestHead:
    """Read header lines up to the blank line that ends them; a malformed head has a `status`."""
    head = _read_buffered_head(rfile)
    return head if head is not None else _read_head_by_lines(rfile)


def _read_buffered_head(rfile: IO[bytes]) -> RequestHead | None:
    """The head, if the reader's buffer holds all of it and it is well-formed; else None, nothing read."""
    peek = getattr(rfile, "peek", None)
    if peek is None:
        return None
    buffered = peek(1)  # what the buffer holds (one read if it is empty)
    if buffered[:2] == b"\r\n":
        rfile.read(2)
        return RequestHead([])
    end = buffered.find(b"\r\n\r\n")
    if end < 0 or end + 2 > _MAXLINE or not WHOLE_HEAD.fullmatch(buffered, 0, end + 2):
        return None
    fields = [(name.decode("latin-1"), value.rstrip(b" \t").decode("latin-1"))
              for name, value in FIELDS.findall(buffered, 0, end + 2)]
    if len(fields) > _MAXHEADERS or len({value for name, value in fields if name.lower() == "content-length"}) > 1:
        return None  # read line by line, which names the fault
    rfile.read(end + 4)
    return RequestHead(fields)


def _read_head_by_lines(rfile: IO[bytes]) -> RequestHead:
    fields: list[tuple[str, str]] = []
    content_lengths: set[str] = set()
    while True:
        line = rfile.readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            return RequestHead([], "Line too long")
        if line in (b"\r\n", b"\n", b""):  # end of the head (or the client closed: pywsgi sees it next)
            break
        if len(fields) >= _MAXHEADERS:
            return RequestHead([], "Too many headers")
        line = line[:-2] if line.endswith(b"\r\n") else line.rstrip(b"\n")
        name, colon, value = line.partition(b":")
        if not colon or not TOKEN.match(name):  # also refuses obs-fold lines and "Name :"
            return RequestHead([], "Invalid header line")
        value = value.strip(b" \t")
        if b"\r" in value or b"\n" in value or b"\0" in value:
            return RequestHead([], "Invalid header value")
        text = value.decode("latin-1")
        if name.lower() == b"content-length":
            content_lengths.add(text)
        fields.append((name.decode("latin-1"), text))
    if len(content_lengths) > 1:
        return RequestHead([], "Conflicting Content-Length")
    return RequestHead(fields)


def environ_fields(head: RequestHead) -> Iterator[tuple[str, str]]:
    """(HTTP_NAME, value) for the WSGI environ, as pywsgi builds them: names with '_' are dropped (they
    could pose as another field), Content-Type and -Length go in their own keys."""
    for field, value in head.fields:
        if "_" in field:
            continue
        key = field.replace("-", "_").upper()
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            yield "HTTP_" + key, value
