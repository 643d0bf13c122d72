"""`katsched api`: serve only the HTTP API in the foreground, for testing and for running it on its own."""

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from katsched.cli.common import ConfigOption
from katsched.errors import StartupError, StorageError

HostOption = Annotated[
    str | None, typer.Option("--host", help="Listen address (default: api.host in the config).")
]
PortOption = Annotated[
    int | None, typer.Option("--port", min=0, max=65535, help="TCP port (default: api.port in the config).")
]


def api_command(config: ConfigOption = None, host: HostOption = None, port: PortOption = None) -> None:
    """Serve the HTTP API alone, without planners or consumers.

    For testing, and for running the runner/UI API on its own; until SIGINT or SIGTERM."""
    from katsched import __version__
    from katsched.api import ApiServer, create_app
    from katsched.api.server import bind
    from katsched.cli.common import load, open_engine, push_policies
    from katsched.clock import SystemClock
    from katsched.logs import configure_logging, secrets_of
    from katsched.store.queue import TaskQueue
    from katsched.store.schedules import ScheduleStore

    settings = load(config)
    configure_logging(settings.logging, secrets=secrets_of(settings))
    host, port = host or settings.api.host, settings.api.port if port is None else port
    bind(host, port).close()  # a port in use ends the start at once, before the store is touched
    try:
        engine = open_engine(settings)
    except StorageError as error:  # like the daemon: a server that cannot start exits 1
        raise StartupError(str(error)) from None
    clock = SystemClock()
    app = create_app(
        TaskQueue(engine, clock, push_policies(settings)),
        ScheduleStore(engine, clock),
        clock,
        token=settings.api.token or None,
        max_body_bytes=settings.api.max_body_bytes,
        version=__version__,
    )
    server = ApiServer(app, host, port)
    stop = _stop_on_signals()
    try:
        server.start()
    except StartupError:
        engine.dispose()
        raise
    typer.echo(f"katsched api listening on {server.url}", err=True)
    while not stop.wait(1.0) and server.is_alive():
        pass
    server.stop()
    engine.dispose()
    if server.error is not None:
        raise typer.Exit(1)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop
