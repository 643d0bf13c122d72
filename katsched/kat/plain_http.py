"""HTTP/1.1 without TLS over the standard library's `http.client`: the transport of the KAT clients for
`http://` service URLs.

httpx stays the client (URLs, query strings, auth, timeouts, decompression, errors); this transport only
moves a request's bytes over a pooled keep-alive connection and reads the answer. httpx applies proxies from
the environment only with its own transport, so `build_client` keeps that one when a proxy is configured;
`https://` URLs keep it too, with its TLS settings. Measured on loopback against the KAT test server, httpx's
own transport (httpcore and h11, pure Python) takes 0.33 ms of CPU per request, `http.client` (whose header
parsing is in C) 0.14 ms; the intake asks Bytes once per new object, so that difference was a tenth of the
intake's CPU.

Failures are raised as the httpx exceptions httpx's transport raises for them, so the clients' retry policy
(`katsched.kat.http`) treats both alike. An idle connection the server has closed is noticed before reuse;
one closed while the request was sent is replaced once for a request that may be repeated (not a POST).
"""

import http.client
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

_Key = tuple[str, int]
REPEATABLE = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_CLOSED_BEFORE_ANSWER = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class PlainHttpTransport(httpx.BaseTransport):
    """At most `max_connections` requests at a time, each on a connection of its own; a request waits for
    one to be free up to the pool timeout (`httpx.PoolTimeout`), as on httpx's transport. Idle connections
    are kept for the next request."""

    def __init__(self, max_connections: int = 10) -> None:
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"{request.url.scheme}:// is not plain HTTP", request=request)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        if not self._slots.acquire(timeout=timeouts.get("pool")):
            raise httpx.PoolTimeout("no connection free within the pool timeout", request=request)
        try:
            return self._send(request, timeouts)
        finally:
            self._slots.release()

    def _send(self, request: httpx.Request, timeouts: dict[str, float | None]) -> httpx.Response:
        key = (request.url.host, request.url.port or 80)
        body = request.read()
        connection, reused = self._checkout(key, timeouts, request)
        # A connection the server closed as we reused it is replaced once, for a request that may be repeated.
        retries = 1 if reused and request.method in REPEATABLE else 0
        while True:
            try:
                response, keep = _exchange(connection, request, body)
            except _CLOSED_BEFORE_ANSWER as error:
                connection.close()
                if not retries:
                    message = f"the server closed the connection: {error}"
                    raise httpx.RemoteProtocolError(message, request=request) from error
                retries -= 1
                connection = self._connect(key, timeouts, request)
                continue
            except BaseException:
                connection.close()
                raise
            break
        if keep:
            self._checkin(key, connection)
        else:
            connection.close()
        return response

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _checkout(
        self, key: _Key, timeouts: dict[str, float | None], request: httpx.Request
    ) -> tuple[http.client.HTTPConnection, bool]:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                connection = idle.pop() if idle else None
            if connection is None:
                return self._connect(key, timeouts, request), False
            if _still_open(connection):
                return connection, True
            connection.close()

    def _connect(
        self, key: _Key, timeouts: dict[str, float | None], request: httpx.Request
    ) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(key[0], key[1], timeout=timeouts.get("connect"))
        try:
            connection.connect()
        except TimeoutError as error:
            raise httpx.ConnectTimeout(str(error) or "timed out", request=request) from error
        except OSError as error:
            raise httpx.ConnectError(str(error), request=request) from error
        assert connection.sock is not None
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.sock.settimeout(timeouts.get("read"))
        return connection

    def _checkin(self, key: _Key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.max_connections:
                idle.append(connection)
                return
        connection.close()


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle connection can carry a request: nothing to read on it (a readable idle socket has
    been closed by the server, or holds bytes nobody asked for)."""
    sock = connection.sock
    if sock is None:
        return False
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def _exchange(
    connection: http.client.HTTPConnection, request: httpx.Request, body: bytes
) -> tuple[httpx.Response, bool]:
    """Send the request, read the whole answer: the response, and whether the connection may be reused."""
    with _raised_as(httpx.WriteTimeout, httpx.WriteError, request):
        connection.putrequest(
            request.method, request.url.raw_path.decode("ascii"), skip_host=True, skip_accept_encoding=True
        )
        for name, value in request.headers.raw:
            connection.putheader(name, value)
        connection.endheaders(body or None)
    with _raised_as(httpx.ReadTimeout, httpx.ReadError, request):
        answer = connection.getresponse()
        content = answer.read()
    response = httpx.Response(
        answer.status,
        headers=answer.getheaders(),
        stream=httpx.ByteStream(content),
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason.encode("latin-1", "replace")},
    )
    return response, not answer.will_close


@contextmanager
def _raised_as(
    timeout: type[httpx.TransportError], failure: type[httpx.TransportError], request: httpx.Request
) -> Iterator[None]:
    """Socket and protocol errors as httpx raises them; a connection closed before the answer as it is."""
    try:
        yield
    except _CLOSED_BEFORE_ANSWER:
        raise
    except TimeoutError as error:
        raise timeout(str(error) or "timed out", request=request) from error
    except http.client.HTTPException as error:  # a malformed answer
        raise httpx.RemoteProtocolError(f"{type(error).__name__}: {error}", request=request) from error
    except OSError as error:
        raise failure(str(error), request=request) from error
