"""The `katsched` command. Each KatschedError becomes one line on stderr and a stable exit code, here only.

Commands are loaded when they run: `COMMANDS` names the module of each, and `katsched --help` lists them from
this table without importing any (see "Lazy imports" in docs/architecture.md). A new command is one entry.
"""

import gc
import importlib
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from typer._click import Command, Context
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperCommand, TyperGroup

from katsched import errors

# Stable exit codes: scripts depend on them. 2 is also click's code for a usage error.
EXIT_CODES: dict[type[errors.KatschedError], int] = {
    errors.ConfigError: 2,
    errors.FilterError: 2,
    errors.InvalidItem: 2,
    errors.InvalidValue: 2,
    errors.SourceError: 2,
    errors.NotFound: 3,
    errors.NotAllowed: 4,
    errors.QueueFull: 5,
    errors.InvalidTransition: 6,
    errors.StorageError: 7,
    errors.ServiceError: 8,
    errors.MessageError: 9,
    errors.StartupError: 1,
}

# name → (module, attribute: a Typer app or a command function, the one line `katsched --help` shows).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "api": ("katsched.cli.api", "api_command", "Serve the HTTP API alone, without planners or consumers."),
    "config": ("katsched.cli.config", "app", "Write, check and show the configuration file."),
    "daemon": (
        "katsched.cli.daemon",
        "daemon_command",
        "Run the scheduler in the foreground (as a systemd service does).",
    ),
    "db": ("katsched.cli.db", "app", "Database schema and retention."),
    "events": ("katsched.cli.events", "app", "Publish sample OpenKAT events to RabbitMQ."),
    "explain": (
        "katsched.cli.explain",
        "explain_command",
        "The decision the planner would take now for each boefje of ORG that takes OOI, and why (dry run).",
    ),
    "queue": ("katsched.cli.queue", "app", "Look at, push to and pop from the queues."),
    "schedules": (
        "katsched.cli.schedules",
        "app",
        "List, show, enable, disable and run recurring schedules.",
    ),
    "status": (
        "katsched.cli.dashboard",
        "status_command",
        "Show the queues, runners, failures and the daemon, live until Ctrl-C.",
    ),
    "tasks": (
        "katsched.cli.tasks",
        "app",
        "Show one task; cancel, requeue or change the status of one task or of many.",
    ),
}


# Commands that give one answer and exit. What their imports build (SQLAlchemy, SQLModel, pydantic, rich)
# lives until the process ends, yet the cyclic garbage collector walks it some 200 times while it loads and
# once more at exit: a third of `katsched queue ls`. For these commands the collector is paused and what
# exists at the end is frozen, so the exit skips it too; their engines are closed when the command ends
# (cli/common.py), not left to the collector. Commands that run for long (daemon, api, status) keep it;
# `status --once` and `status --json` answer once too.
ONE_ANSWER = frozenset({"config", "queue", "schedules", "tasks"})


def load_command(name: str) -> Command:
    """The click command behind `katsched NAME`, importing its module now."""
    module, attribute, _help = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):  # a group, even with one subcommand (`db upgrade`)
        target.rich_markup_mode = None  # plain help, as the root's
        command: Command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False, rich_markup_mode=None)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """The root group: a placeholder per command (name and help line) until the command is run."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (_module, _attribute, help_line) in COMMANDS.items():
            self.commands.setdefault(name, TyperCommand(name, help=help_line))

    def list_commands(self, ctx: Context) -> list[str]:
        return sorted(self.commands)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] in COMMANDS and self.commands[args[0]].callback is None:
            self.commands[args[0]] = load_command(args[0])
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="katsched",
    help="Task scheduler for OpenKAT-style security scanning.",
    cls=LazyGroup,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: typer's rich help costs more to import than --help may take
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from katsched import __version__

        typer.echo(f"katsched {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Task scheduler for OpenKAT-style security scanning."""


def exit_code_for(error: errors.KatschedError) -> int:
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def options_of(args: Sequence[str]) -> Sequence[str]:
    """The command line before a `--` that ends the options."""
    return args[: args.index("--")] if "--" in args else args


def wants_json(args: Sequence[str]) -> bool:
    """Whether the command line asks for JSON."""
    return "--json" in options_of(args)


def answers_once(args: Sequence[str]) -> bool:
    """Whether `katsched ARGS` gives one answer and exits (see ONE_ANSWER)."""
    command = args[0] if args else None
    if command == "status":
        return "--once" in options_of(args) or wants_json(args)
    return command in ONE_ANSWER


def fail(message: str, code: int, as_json: bool) -> NoReturn:
    """One line on stderr — with --json one document `{"error", "code"}` — then exit. stderr even for JSON:
    stdout holds only answers (`explain` prints a partial one before it fails)."""
    line = json.dumps({"error": message, "code": code}) if as_json else f"katsched: error: {message}"
    print(line, file=sys.stderr)
    sys.exit(code)


def usage_message(error: UsageError) -> str:
    """click's message on one line, prefixed with the subcommand it concerns (`queue push: Missing …`)."""
    message = " ".join(error.format_message().split())
    path = error.ctx.command_path.split()[1:] if error.ctx is not None else []
    hint = f" (see `katsched {' '.join(path)} --help`)".replace("  ", " ")
    return f"{' '.join(path)}: {message}{hint}" if path else f"{message}{hint}"


@contextmanager
def collector_paused(paused: bool) -> Iterator[None]:
    """Run without the cyclic garbage collector when `paused`, then freeze what exists (see ONE_ANSWER)."""
    if not paused:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def main() -> NoReturn:
    args = sys.argv[1:]
    with collector_paused(answers_once(args)):
        run(args)


def run(args: list[str]) -> NoReturn:
    as_json = wants_json(args)
    try:
        result = app(args=args, prog_name="katsched", standalone_mode=False)
    except errors.KatschedError as error:
        fail(str(error), exit_code_for(error), as_json)
    except typer.Abort:
        fail("aborted", 130, as_json)
    except NoArgsIsHelpError as error:  # `katsched queue`: the help of the group, as asked for
        error.show()
        sys.exit(error.exit_code)
    except UsageError as error:
        fail(usage_message(error), error.exit_code, as_json)
    sys.exit(result if isinstance(result, int) else 0)
