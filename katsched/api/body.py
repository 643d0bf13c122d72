"""Request bodies: read as JSON whatever their Content-Type, and refused when they hold a value the store
could keep but never give back.

OpenKAT's workers re-push the task they hold at shutdown as raw content without a Content-Type, and
`curl -d` sends form-urlencoded: a body is parsed as JSON whatever it is declared to be, and the error of one
that is not JSON names what it was declared as. Every route takes its body through `JsonBodyRoute`, so this
is the one place where bodies are decoded.

Refused with 400, before anything is stored: NaN and ±Infinity (not JSON; SQLite stores them and then every
JSON function on the row fails), objects and arrays nested deeper than `MAX_NESTING` (rendering and the
database's JSON functions have depth limits of their own), and lone UTF-16 surrogates such as "\\ud800" (no
UTF-8 text can hold one: hashing and PostgreSQL fail on them).
"""

import json
import math
import re
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

MAX_NESTING = 64
JSON_TYPE = b"application/json"
DECLARED_TYPE = "katsched.declared_content_type"  # the Content-Type the client sent, kept in the scope
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class BodyRefused(HTTPException):
    """A body that is not JSON, or holds a value katsched refuses to store (400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(400, f"Bad request error occurred: {reason}")


def _not_a_number(constant: str) -> Any:
    raise BodyRefused(f"the body holds {constant}, which is not a JSON number")


# One decoder: `json.loads` with an option builds a new one per call (a sixth of decoding a push's body).
_DECODER = json.JSONDecoder(parse_constant=_not_a_number)


def decode_json(body: bytes, declared: str | None) -> Any:
    """The JSON document in `body`; BodyRefused if it is not JSON (naming the declared type) or is poison.
    A syntax error in a body declared as JSON stays FastAPI's 422, as before."""
    try:
        # As `json.loads` reads bytes: UTF-8, -16 or -32, told apart by the first bytes.
        document = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except json.JSONDecodeError as exc:
        if declared is not None and _is_json_type(declared.encode("latin-1")):
            raise
        raise BodyRefused(f"the body is not JSON (Content-Type: {declared or 'none'}): {exc}") from exc
    except UnicodeDecodeError as exc:
        raise BodyRefused(f"the body is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except RecursionError as exc:
        raise BodyRefused(f"the body nests objects and arrays more than {MAX_NESTING} levels deep") from exc
    check_document(document)
    return document


def check_document(document: Any) -> None:
    """BodyRefused at the first place that nests too deep or holds a lone surrogate (walked without
    recursion, so any depth is measured safely). A first walk only looks; the places are named by a second
    walk, only for a document that is refused."""
    if not _is_poison(document):
        return
    pending: list[tuple[Any, str, int]] = [(document, "body", 1)]
    while pending:
        value, where, depth = pending.pop()
        if isinstance(value, str):
            if LONE_SURROGATE.search(value):
                raise BodyRefused(f"{where}: a lone UTF-16 surrogate cannot be stored as text")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise BodyRefused(f"{where}: {value} is out of range for a JSON number")
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_NESTING:
            raise BodyRefused(f"{where}: nested more than {MAX_NESTING} levels deep")
        if isinstance(value, list):
            pending.extend((item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value))
            continue
        for key, item in value.items():
            if LONE_SURROGATE.search(key):
                raise BodyRefused(f"{where}: a key holds a lone UTF-16 surrogate, which cannot be stored")
            pending.append((item, f"{where}.{key}", depth + 1))


def _is_poison(document: Any) -> bool:
    """Whether `check_document` refuses `document`, without naming where."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if not value.isascii() and LONE_SURROGATE.search(value):
                return True
        elif isinstance(value, float):
            if not math.isfinite(value):
                return True
        elif isinstance(value, dict | list):
            if depth > MAX_NESTING:
                return True
            if isinstance(value, dict):
                if any(not key.isascii() and LONE_SURROGATE.search(key) for key in value):
                    return True
                value = value.values()
            pending.extend((item, depth + 1) for item in value)
    return False


def _is_json_type(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == JSON_TYPE or (media.startswith(b"application/") and media.endswith(b"+json"))


class JsonBodyRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = decode_json(await self.body(), self.scope.get(DECLARED_TYPE))
        return self._json


class JsonBodyRoute(APIRoute):
    """A route whose body FastAPI always parses as JSON, through `decode_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_json(request: Request) -> Response:
            return await handle(JsonBodyRequest(_declared_as_json(request.scope), request.receive))

        return handle_json


def _declared_as_json(scope: MutableMapping[str, Any]) -> dict[str, Any]:
    """The scope with its Content-Type set to JSON (so FastAPI parses the body), the original kept aside."""
    declared: str | None = None
    headers = []
    for name, value in scope["headers"]:
        if name == b"content-type":
            declared = value.decode("latin-1")
            if _is_json_type(value):
                return {**scope, DECLARED_TYPE: declared}
            continue
        headers.append((name, value))
    headers.append((b"content-type", JSON_TYPE))
    return {**scope, "headers": headers, DECLARED_TYPE: declared}
