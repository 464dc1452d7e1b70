"""A small asyncio HTTP/1.1 client for firing many concurrent requests at a local server in tests."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


async def _one(host: str, port: int, method: str, path: str, headers: dict[str, str], body: Any,
               timeout: float) -> Reply:
    payload = b"" if body is None else json.dumps(body).encode()
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
            f"Content-Length: {len(payload)}"]
    if body is not None:
        head.append("Content-Type: application/json")
    head += [f"{name}: {value}" for name, value in headers.items()]
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)  # the server closes after the response
    finally:
        writer.close()
    header_block, _, content = raw.partition(b"\r\n\r\n")
    status = int(header_block.split(b" ", 2)[1])
    try:
        parsed = json.loads(content) if content else None
    except ValueError:
        parsed = content.decode(errors="replace")
    return Reply(status, parsed)


async def _fire(host: str, port: int, requests: Sequence[tuple[str, str, dict[str, str], Any]],
                concurrency: int, timeout: float) -> list[Reply]:
    gate = asyncio.Semaphore(concurrency)

    async def bounded(request: tuple[str, str, dict[str, str], Any]) -> Reply:
        async with gate:
            try:
                return await _one(host, port, *request, timeout=timeout)
            except (OSError, asyncio.TimeoutError, IndexError, ValueError) as error:
                return Reply(0, repr(error))  # 0 = no HTTP response at all

    return list(await asyncio.gather(*(bounded(r) for r in requests)))


def fire(host: str, port: int, requests: Sequence[tuple[str, str, dict[str, str], Any]], *,
         concurrency: int, timeout: float = 30.0) -> list[Reply]:
    """Send (method, path, headers, json body) requests with at most `concurrency` connections open."""
    return asyncio.run(_fire(host, port, requests, concurrency, timeout))
