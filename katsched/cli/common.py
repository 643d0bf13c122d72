"""What every command shares: the --config and --json options, opening the database (read-write, or
read-only for the commands that only look), task ids from a prefix, and output.

Heavy modules (SQLAlchemy, the store, pydantic models, rich) are imported inside the functions, so that a
command module that imports this one stays cheap to load (see "Lazy imports" in docs/architecture.md).
"""

import json
import re
import sys
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click.globals import get_current_context

from katsched.errors import NotFound, StorageError

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine

    from katsched.config import Settings
    from katsched.store.queue import SqlTaskQueue

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML config file (default: $KATSCHED_CONFIG, /etc/katsched/config.toml, ./config.toml).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
TaskIdArgument = Annotated[
    str, typer.Argument(help="The task's id, or the first 4 or more of its hex digits.")
]

_HEX_PREFIX = re.compile(r"[0-9a-f]{4,32}")


@cache
def console() -> "Console":
    from rich.console import Console

    return Console()


def load(config: Path | None) -> "Settings":
    from katsched.config import load_settings

    return load_settings(config)


def open_engine(settings: "Settings") -> "Engine":
    """The engine for the configured database, created if need be and migrated to the newest schema."""
    from katsched import wiring

    return closed_with_the_command(wiring.open_engine(settings))


def open_read_only(settings: "Settings") -> "Engine":
    """The configured database as it is, for commands that only look: never created, migrated or written.

    Works with read-only access to the file (group read on /var/lib/katsched) and says what to do when there
    is no database or its schema is behind."""
    from katsched import wiring
    from katsched.store.engine import DATABASE_ERRORS, first_line, sqlite_file
    from katsched.store.migrate import current_revision, revisions

    url = settings.database.url
    file = sqlite_file(url)
    where = file or _where(url)
    if file is not None and not file.exists():
        raise StorageError(f"no database at {file}: start the daemon or run `katsched db upgrade`")
    engine = wiring.engine_for(settings, read_only=True)
    try:
        revision = current_revision(engine)
    except DATABASE_ERRORS as exc:
        engine.dispose()
        raise StorageError(f"cannot read the database at {where}: {first_line(exc)}") from None
    known, head = revisions()
    if revision != head:
        engine.dispose()
        if revision in known or revision is None:
            state = f"is at revision {revision}" if revision else "has no katsched schema"
            raise StorageError(f"database at {where} needs `katsched db upgrade` ({state}, not {head})")
        raise StorageError(
            f"database at {where} is at revision {revision}, newer than this katsched ({head})"
        )
    return closed_with_the_command(engine)


def closed_with_the_command(engine: "Engine") -> "Engine":
    """`engine`, closed when the running command ends rather than when the garbage collector finds it (which
    a command that gives one answer never lets run: see ONE_ANSWER in cli/__init__.py). A SQLite writer's
    last close folds the -wal file back into the database."""
    context = get_current_context(silent=True)
    if context is not None:
        context.call_on_close(engine.dispose)
    return engine


def _where(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_queue(config: Path | None, *, read_only: bool = False) -> "SqlTaskQueue":
    """The task queue of the configured database; `read_only` for commands that only look."""
    from katsched import wiring
    from katsched.clock import SystemClock

    settings = load(config)
    engine = open_read_only(settings) if read_only else open_engine(settings)
    return wiring.task_queue(settings, engine, SystemClock())


def resolve_task_id(queue: "SqlTaskQueue", text: str) -> uuid.UUID:
    """A full task id, or the one task whose id starts with the hex digits given (dashes ignored)."""
    from katsched.store.task_ids import ids_with_prefix

    digits = text.strip().lower().replace("-", "")
    if not _HEX_PREFIX.fullmatch(digits):
        raise typer.BadParameter(
            f"{text!r} is not a task id nor the first 4 or more of its hex digits", param_hint="TASK_ID"
        )
    if len(digits) == 32:
        return uuid.UUID(digits)
    found = ids_with_prefix(queue.engine, digits)
    if not found:
        raise NotFound(f"no task id starts with {text}")
    if len(found) > 1:
        shown = ", ".join(str(task_id) for task_id in found[:3])
        raise typer.BadParameter(
            f"{text} is ambiguous: it starts {'more than 3 task ids' if len(found) > 3 else 'the ids'} "
            f"{shown}{', …' if len(found) > 3 else ''}; give more digits",
            param_hint="TASK_ID",
        )
    return found[0]


def iso(moment: datetime) -> str:
    """The one timestamp format of JSON output: ISO 8601 in UTC with a Z (naive times are UTC)."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """`value` as JSON-ready data: models dumped, datetimes in `iso` form, everywhere in the document."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return _plain(value.model_dump())
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, uuid.UUID | Path):
        return str(value)
    return value


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(_plain(document), indent=2, default=str) + "\n")
