"""HTTP to the KAT services, done one way: a pooled client, one retry policy, one error translation.

Every request to Katalogus, Octopoes and Bytes goes through `ServiceHttp.request`, which

- retries transient failures only (refused or dropped connections, timeouts, 429 and 5xx answers) a bounded
  number of times with exponential backoff, sleeping through an injectable `sleep`;
- turns 404 into None ("absent"), which the clients return as None or an empty result;
- translates everything else, once, into `ServiceError`, or `ServiceUnavailable` when retries ran out,
  with a one-line message naming the service, method, URL path and status.
"""

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode
from urllib.request import getproxies_environment

import httpx
from pydantic import TypeAdapter, ValidationError

from katsched import __version__
from katsched.backoff import Backoff
from katsched.errors import ServiceError, ServiceUnavailable
from katsched.kat.plain_http import PlainHttpTransport

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_USER_AGENT = f"katsched/{__version__}"

Scalar = str | int | bool
Params = Mapping[str, Scalar | Sequence[Scalar] | None]
"""Query parameters: a sequence repeats the key (`types=A&types=B`); None leaves the key out."""

Sleep = Callable[[float], None]


def build_client(
    base_url: str,
    *,
    timeout: float,
    user_agent: str = DEFAULT_USER_AGENT,
    max_connections: int = 10,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The one way to make a client for a KAT service: pooled keep-alive connections, a timeout for every
    phase of a request, and our user agent. `transport` is the seam for tests (`httpx.MockTransport`); by
    default an `http://` service gets `PlainHttpTransport`, an `https://` one httpx's own, and so does any
    service when the environment names a proxy for plain HTTP (httpx routes through proxies from the
    environment only with its own transport)."""
    if transport is None and httpx.URL(base_url).scheme == "http" and not _proxy_configured():
        transport = PlainHttpTransport(max_connections)
    return httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": user_agent},
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        transport=transport,
    )


def _proxy_configured() -> bool:
    proxies = getproxies_environment()  # HTTP_PROXY, ALL_PROXY, either case, as httpx reads them
    return bool(proxies.get("http") or proxies.get("all"))


HTTP_BACKOFF = Backoff(initial=0.5, maximum=10.0, jitter=0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, a transient failure is tried again."""

    attempts: int = 4
    """Tries in all, the first included."""
    backoff: Backoff = HTTP_BACKOFF
    """The pauses; its `maximum` also caps a server's Retry-After."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a retry policy needs at least one attempt")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first); a server's Retry-After may only
        lengthen the pause, never beyond the backoff's maximum."""
        return min(self.backoff.maximum, max(self.backoff.delay(retry - 1), retry_after or 0.0))


@dataclass(frozen=True)
class _Transient:
    where: str
    reason: str
    retry_after: float | None = None


# Refused or dropped connections and timeouts may heal by themselves; a malformed URL or an unsupported
# scheme never will, so those are not retried.
_TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def is_transient_status(status: int) -> bool:
    return status == 429 or status >= 500


class ServiceHttp:
    """One KAT service's HTTP connection, with the retry policy and error translation of this module."""

    def __init__(
        self,
        service: str,
        client: httpx.Client,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.service = service
        self.client = client
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    def close(self) -> None:
        self.client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        form: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> httpx.Response | None:
        """The successful response, or None when the service says the resource does not exist (404)."""
        attempts = self._retry.attempts
        for attempt in range(1, attempts + 1):
            outcome = self._attempt(method, _with_query(path, params), form, auth)
            if not isinstance(outcome, _Transient):
                return outcome
            if attempt == attempts:
                raise ServiceUnavailable(f"{outcome.where} {outcome.reason} after {attempt} attempts")
            delay = self._retry.delay(attempt, outcome.retry_after)
            logger.warning(
                "kat_request_retry service=%s method=%s path=%s reason=%r attempt=%d delay=%.2f",
                self.service, method, path, outcome.reason, attempt, delay,
            )  # fmt: skip
            self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def get_as(
        self,
        path: str,
        adapter: TypeAdapter[T],
        params: Params | None = None,
        *,
        auth: httpx.Auth | None = None,
    ) -> T | None:
        """GET `path` and validate its JSON body with `adapter`; None when absent (404)."""
        response = self.request("GET", path, params=params, auth=auth)
        return None if response is None else self.decode(response, adapter)

    def healthy(self, path: str) -> bool:
        """Whether the service says `{"healthy": true}` at `path`. Never raises: for `/health` a failure is
        an answer, and retrying would only delay it."""
        try:
            response = self._attempt("GET", path, None, None)
        except ServiceError:
            return False
        if not isinstance(response, httpx.Response):
            return False
        try:
            body = response.json()
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("healthy") is True

    def decode(self, response: httpx.Response, adapter: TypeAdapter[T]) -> T:
        try:
            return adapter.validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise ServiceError(
                f"{self._where(response.request)} answered a body that does not fit: {where}: {first['msg']}"
            ) from exc

    def _attempt(
        self,
        method: str,
        path: str,
        form: Mapping[str, str] | None,
        auth: httpx.Auth | None,
    ) -> httpx.Response | _Transient | None:
        try:
            response = self.client.request(method, path, data=form, auth=auth or httpx.USE_CLIENT_DEFAULT)
        except _TRANSIENT_ERRORS as exc:
            return _Transient(
                self._where(_failed_request(exc, method, path)), f"failed: {type(exc).__name__}"
            )
        except httpx.HTTPError as exc:
            where = self._where(_failed_request(exc, method, path))
            raise ServiceError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return response
        status = response.status_code
        if status == 404:
            return None
        # The request that failed: with Bytes that may be the login rather than the request we made.
        where = self._where(response.request)
        if is_transient_status(status):
            return _Transient(where, f"answered {status}", _retry_after(response))
        raise ServiceError(f"{where} answered {status} {response.reason_phrase}")

    def _where(self, request: httpx.Request) -> str:
        return f"{self.service}: {request.method} {request.url.path}"


def _with_query(path: str, params: Params | None) -> str:
    """`path` with its query string, encoded as httpx encodes `params=` (httpx merging `params=` into the
    URL took ~0.03 of a Bytes look-up's 0.37 ms of CPU). A None leaves the key out rather than sending `key=`
    as httpx would; a sequence repeats the key."""
    pairs: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        values = [value] if isinstance(value, str | int | bool) else value
        pairs.extend((key, _query_value(item)) for item in values)
    return f"{path}?{urlencode(pairs)}" if pairs else path


def _query_value(value: Scalar) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _failed_request(exc: httpx.HTTPError, method: str, path: str) -> httpx.Request:
    try:
        return exc.request
    except RuntimeError:  # raised before a request was built, e.g. for an invalid URL
        return httpx.Request(method, path)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:  # absent, or an HTTP date: fall back on our own backoff
        return None
