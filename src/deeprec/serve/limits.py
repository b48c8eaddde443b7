"""Request-body size limit as a pure ASGI middleware.

Checks the declared Content-Length first, then counts the bytes actually streamed (a client
can lie or use chunked encoding), buffering at most `max_bytes` before the app sees the body.
Oversized bodies get 413 with a JSON message; the app is never called for them.
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]


class BodyLimitMiddleware:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reject(send, 400, "Content-Length is not an integer")
                    return
                if declared > self.max_bytes:
                    await _reject(send, 413, self._too_big(f"Content-Length {declared}"))
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _reject(send, 413, self._too_big(f"more than {size} bytes sent"))
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replay = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        sent = False

        async def receive_again() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return replay
            return await receive()

        await self.app(scope, receive_again, send)

    def _too_big(self, what: str) -> str:
        return f"request body too large ({what}); the limit is {self.max_bytes} bytes"


async def _reject(send: Any, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
