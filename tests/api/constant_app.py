"""A WSGI app that answers every request with a 2-byte 200: a server under test with nothing else to do."""

from __future__ import annotations

from typing import Any


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer `ok`."""
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
