"""uvicorn in a thread of its own, for the daemon (and the integration tests and benchmark).

`start()` binds the listening socket in the caller's thread, so a port already in use is reported at once and
connections made right after `start()` wait in the backlog until the server accepts them: nobody polls for
readiness. `stop()` lets in-flight requests finish (bounded) and joins the thread.
"""

import logging
import socket
import threading

import uvicorn
from starlette.types import ASGIApp

from katsched.errors import StartupError

logger = logging.getLogger("katsched.api")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; one that cannot be had is a StartupError of one line (`api: cannot listen on
    127.0.0.1:8004: address already in use`)."""
    try:
        family, kind, protocol, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, protocol)
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        raise _cannot_listen(host, port, exc) from None
    return listener


def _cannot_listen(host: str, port: int, exc: OSError) -> StartupError:
    reason = (exc.strerror or str(exc)).lower()
    return StartupError(f"api: cannot listen on {host}:{port}: {reason}")


class ApiServer:
    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 8004, *, drain_seconds: int = 5):
        self.app = app
        self.host = host
        self.requested_port = port
        self.bound_port: int | None = None
        self.drain_seconds = drain_seconds
        self.error: BaseException | None = None
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        return self.requested_port if self.bound_port is None else self.bound_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._socket = bind(self.host, self.requested_port)
        self.bound_port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=self.drain_seconds,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="katsched-api", daemon=True)
        self._thread.start()
        logger.info("api_listening url=%s", self.url)

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # SystemExit too: uvicorn exits when it cannot start
            self.error = exc
            logger.error("api_server_failed error=%r", str(exc))

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        logger.info("api_stopped url=%s", self.url)

    def __enter__(self) -> "ApiServer":
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def serve(app: ASGIApp, host: str, port: int) -> ApiServer:
    """Start serving `app` on host:port in a background thread; the caller owns `stop()`."""
    server = ApiServer(app, host, port)
    server.start()
    return server
