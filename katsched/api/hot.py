"""Push and pop, the runners' hot routes, served without Starlette's routing and FastAPI's request handling.

A plain ASGI app between `ApiMiddleware` and FastAPI, so the token check, the body limit and the latency
histogram apply as to every route, and the requests it serves never pass FastAPI's own middleware stack. It
serves a request only when FastAPI would accept it: exactly
`POST /schedulers/{scheduler_id}/push` or `…/pop`, a declared Content-Length, a JSON body that decodes and
validates as the route's parameters (and, for pop, no query but `limit`). Anything else goes to FastAPI with
the body replayed, so every refusal of the request itself is FastAPI's own answer. Both paths call the same
endpoint methods of `SchedulerRoutes`; only the way the parameters reach them differs, and the errors are
answered as FastAPI's exception handlers answer them (`katsched.api.errors`).

Where the store has one writer at a time (SQLite), a push and a pop of a few tasks (`INLINE_POP_LIMIT`: the
workers pop one) are tried on the event loop itself, asked not to wait: each takes a fraction of a
millisecond, and saves the hand-off to a thread and back, which costs as much again (and, with many clients,
the threads' contention for the write lock and the GIL). Only when it would wait (another writer holds the
lock, no connection is free, the Katalogus must be asked for the plugin, a push-back reads its task first)
does it go to a thread to wait there, so the event loop never waits. The threads are a pool of the process's
own (`STORE_THREADS`): a plain executor hand-off costs about half of anyio's, which FastAPI uses.
"""

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from katsched.api.body import decode_json
from katsched.api.errors import KNOWN_ERRORS, known_error_response, unexpected_error_response
from katsched.api.routes.schedulers import SchedulerRoutes, popped_by
from katsched.api.schemas import DEFAULT_POP_LIMIT, TaskPush
from katsched.errors import WouldWait

HOT_PATH = re.compile(r"/schedulers/([^/]+)/(push|pop)")
POP_QUERY = re.compile(rb"limit=(0|[1-9][0-9]{0,2}|1000)")
Endpoint = Callable[[bool], Response]  # called with `wait`: whether it may wait for the write lock
INLINE_POP_LIMIT = 10  # a larger pop renders many tasks: on a thread, not holding up the event loop
# As many as anyio's default limit, which the routes FastAPI serves share; threads start only when needed.
STORE_THREADS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="katsched-api")


class NotHot(Exception):
    """A request the fast path leaves to FastAPI."""


class HotRoutes:
    """`routes`: FastAPI's push and pop routes by action ("push", "pop"), put in the scope as the router would
    (the latency histogram is labelled with their path)."""

    def __init__(self, app: ASGIApp, *, schedulers: SchedulerRoutes, routes: dict[str, APIRoute]) -> None:
        self.app = app
        self.schedulers = schedulers
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = _hot(scope)
        if matched is None:
            await self.app(scope, receive, send)
            return
        scheduler_id, action = matched
        received = await _receive_body(receive)
        try:
            body = _whole_body(received)
            if action == "push":
                endpoint = self._push(scheduler_id, body)
                inline = self.schedulers.ctx.queue.single_writer
            else:
                endpoint, inline = self._pop(scheduler_id, body, scope)
        except NotHot:
            await self.app(scope, _replay(received, receive), send)
            return
        scope["route"] = self.routes[action]
        try:
            response = await self._answer(endpoint, inline=inline)
        except KNOWN_ERRORS as error:
            response = known_error_response(error)
        except Exception as error:
            response = unexpected_error_response(scope["path"], error)
        await response(scope, receive, send)

    @staticmethod
    async def _answer(endpoint: Endpoint, *, inline: bool) -> Response:
        if inline:
            try:
                return endpoint(False)
            except WouldWait:
                pass  # another writer has the store: wait for it on a thread, not on the event loop
        return await asyncio.get_running_loop().run_in_executor(STORE_THREADS, endpoint, True)

    def _push(self, scheduler_id: str, body: bytes) -> Endpoint:
        try:
            item = TaskPush.model_validate(_document(body))
        except ValidationError:
            raise NotHot from None
        return lambda wait: self.schedulers.push_for(scheduler_id, item, wait=wait)

    def _pop(self, scheduler_id: str, body: bytes, scope: Scope) -> tuple[Endpoint, bool]:
        """The pop, and whether to try it on the event loop."""
        query = scope["query_string"]
        found = POP_QUERY.fullmatch(query) if query else None
        if query and found is None:
            raise NotHot
        limit = int(found.group(1)) if found is not None else None
        filters = _document(body) if body else None
        if filters is not None and not isinstance(filters, dict):
            raise NotHot
        runner = popped_by(scope)
        size = DEFAULT_POP_LIMIT if limit is None else limit
        inline = self.schedulers.ctx.queue.single_writer and size <= INLINE_POP_LIMIT
        return lambda wait: self.schedulers.pop_for(scheduler_id, size, filters, runner, wait=wait), inline


def _hot(scope: Scope) -> tuple[str, str] | None:
    """(scheduler_id, "push" or "pop") of a request the fast path may serve; None for any other."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    matched = HOT_PATH.fullmatch(scope["path"])
    if matched is None or not any(name == b"content-length" for name, _ in scope["headers"]):
        return None  # a chunked body is FastAPI's (the middleware's limit answers it as it arrives)
    return matched.group(1), matched.group(2)


def _document(body: bytes) -> Any:
    """The JSON document of `body`, as `JsonBodyRoute` decodes it whatever the declared type."""
    try:
        return decode_json(body, None)
    except Exception:  # not JSON, or refused: FastAPI answers with its own 400 or 422
        raise NotHot from None


async def _receive_body(receive: Receive) -> list[Message]:
    """The messages of the request's body, up to its last or a disconnect."""
    received = []
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return received


def _whole_body(received: list[Message]) -> bytes:
    if received[-1]["type"] != "http.request":
        raise NotHot  # the client left: FastAPI's handling of that, as for any route
    return b"".join(message.get("body", b"") for message in received)


def _replay(received: list[Message], receive: Receive) -> Receive:
    """`receive` that first hands out the messages already received, in order."""
    pending = list(reversed(received))

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
