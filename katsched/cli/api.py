"""`katsched api`: serve only the HTTP API in the foreground, for testing and for running it on its own."""

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

    The same API as the daemon's, `/explain` included (it asks the configured KAT services), but nothing
    is planned or consumed. For testing, and for running the runner/UI API on its own; until SIGINT or
    SIGTERM."""
    from katsched import wiring
    from katsched.api import ApiServer
    from katsched.api.server import bind
    from katsched.cli.common import load
    from katsched.clock import SystemClock
    from katsched.logs import configure_logging, secrets_of
    from katsched.supervisor import Signals, freeze_start_up_objects

    settings = load(config)
    configure_logging(settings.logging, secrets=secrets_of(settings))
    host, port = host or settings.api.host, settings.api.port if port is None else port
    bind(host, port).close()  # a port in use ends the start at once, before the store is touched
    try:
        engine = wiring.open_engine(settings, serving=True)
    except StorageError as error:  # like the daemon: a server that cannot start exits 1
        raise StartupError(str(error)) from None
    core = wiring.build_core(settings, engine, SystemClock())
    server = ApiServer(wiring.build_app(core), host, port)
    signals = Signals("api")
    signals.install(reload=False)
    checkpointer = wiring.wal_checkpointer(settings)
    try:
        server.start()
    except StartupError:
        core.close()
        raise
    if checkpointer is not None:
        checkpointer.start()
    freeze_start_up_objects()
    typer.echo(f"katsched api listening on {server.url}", err=True)
    while not signals.stop.wait(1.0) and server.is_alive():
        pass
    server.stop()
    if checkpointer is not None:
        checkpointer.stop(timeout=5.0)
    core.close()
    if server.error is not None:
        raise typer.Exit(1)
