"""What every command shares: the --config option, building the store from Settings, and output helpers."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from sqlalchemy import Engine

from katsched.clock import SystemClock
from katsched.config import Settings, load_settings
from katsched.core.models import PushPolicy, SchedulerKind
from katsched.store.engine import build_engine
from katsched.store.migrate import upgrade
from katsched.store.queue import TaskQueue

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML config file (default: $KATSCHED_CONFIG, /etc/katsched/config.toml, ./config.toml).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]

console = Console()


def open_engine(settings: Settings) -> Engine:
    """The engine for the configured database, migrated to the newest schema."""
    engine = build_engine(
        settings.database.url,
        busy_timeout_ms=settings.database.busy_timeout_ms,
        pool_size=settings.database.pool_size,
        sqlite_cache_mib=settings.database.sqlite_cache_mib,
    )
    upgrade(engine)
    return engine


def push_policies(settings: Settings) -> dict[str, PushPolicy]:
    policies = {}
    for kind in SchedulerKind:
        scheduler = settings.scheduler(kind.value)
        policies[kind.value] = PushPolicy(
            allow_replace=scheduler.allow_replace,
            allow_updates=scheduler.allow_updates,
            allow_priority_updates=scheduler.allow_priority_updates,
            maxsize=scheduler.maxsize,
        )
    return policies


def open_queue(config: Path | None) -> TaskQueue:
    settings = load_settings(config)
    return TaskQueue(open_engine(settings), SystemClock(), push_policies(settings))


def print_json(document: Any) -> None:
    if isinstance(document, BaseModel):
        document = document.model_dump(mode="json")
    elif isinstance(document, list):
        document = [
            item.model_dump(mode="json") if isinstance(item, BaseModel) else item for item in document
        ]
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
