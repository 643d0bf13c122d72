"""One plain ASGI middleware: the bearer token check, the request body limit and the latency histogram.

Plain ASGI rather than Starlette's BaseHTTPMiddleware, which costs a task and a stream per request.
"""

import hmac
import json
from collections.abc import Callable, Sequence

from fastapi import HTTPException
from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = frozenset({"/health"})
UNAUTHORISED = json.dumps({"detail": "Not authenticated"}).encode()


class ApiMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        max_body_bytes: int,
        latency: Histogram,
        monotonic: Callable[[], float],
    ) -> None:
        self.app = app
        self.monotonic = monotonic
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.too_large = f"Request body too large (limit {max_body_bytes} bytes)"
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.monotonic()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if not self._authorised(scope):
                await _refuse(send_and_note, 401, UNAUTHORISED, [(b"www-authenticate", b"Bearer")])
            elif self._declared_length(scope) > self.max_body_bytes:
                await _refuse(send_and_note, 413, json.dumps({"detail": self.too_large}).encode())
            else:
                await self.app(scope, self._limited(receive), send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.latency.labels(scope["method"], route, str(status)).observe(self.monotonic() - started)

    def _authorised(self, scope: Scope) -> bool:
        if self.expected is None:
            return True
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if path.removeprefix(root) in OPEN_PATHS:
            return True
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        return hmac.compare_digest(given, self.expected)

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
        return 0

    def _limited(self, receive: Receive) -> Receive:
        """A body sent without a length (chunked) is counted as it arrives; FastAPI answers the 413."""
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise HTTPException(413, self.too_large)
            return message

        return receive_limited


async def _refuse(send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})
