"""The `katsched` command. Each KatschedError becomes one line on stderr and a stable exit code, here only."""

import sys
from typing import NoReturn

import typer

from katsched import errors

app = typer.Typer(
    name="katsched",
    help="Task scheduler for OpenKAT-style security scanning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Stable exit codes: scripts depend on them. 2 is also click's code for a usage error.
EXIT_CODES: dict[type[errors.KatschedError], int] = {
    errors.ConfigError: 2,
    errors.FilterError: 2,
    errors.InvalidItem: 2,
    errors.SourceError: 2,
    errors.NotFound: 3,
    errors.NotAllowed: 4,
    errors.QueueFull: 5,
    errors.InvalidTransition: 6,
    errors.StorageError: 7,
    errors.ServiceError: 8,
    errors.MessageError: 9,
}


def exit_code_for(error: errors.KatschedError) -> int:
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def _register_commands() -> None:
    # Imported here so that `katsched --help` stays fast and each module registers on `app` once.
    from katsched.cli import api, config, daemon, dashboard, db, events, explain, queue, schedules, tasks

    app.add_typer(config.app, name="config")
    app.add_typer(db.app, name="db")
    app.add_typer(events.app, name="events")
    app.add_typer(queue.app, name="queue")
    app.add_typer(schedules.app, name="schedules")
    app.add_typer(tasks.app, name="tasks")
    api.register(app)
    daemon.register(app)
    dashboard.register(app)
    explain.register(app)


def main() -> NoReturn:
    _register_commands()
    try:
        result = app(standalone_mode=False)
    except errors.KatschedError as error:
        print(f"katsched: error: {error}", file=sys.stderr)
        sys.exit(exit_code_for(error))
    except typer.Abort:
        print("katsched: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as error:  # usage errors (typer's click) arrive here in non-standalone mode
        show = getattr(error, "show", None)
        if show is None:
            raise
        show()
        sys.exit(int(getattr(error, "exit_code", 2)))
    sys.exit(result if isinstance(result, int) else 0)
