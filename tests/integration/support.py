"""What several integration test modules share."""

import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from katsched.core.hashing import task_hash
from katsched.core.models import Boefje, BoefjeTask, Plugin
from tests.contract.kat_fake_server import KatFakeServer

Run = Callable[..., subprocess.CompletedProcess[str]]

HOSTNAME = Plugin(
    id="dns-records", type="boefje", enabled=True, scan_level=1, consumes=["Hostname"], produces=[]
)


def write_daemon_config(
    tmp_path: Path,
    kat: KatFakeServer,
    amqp_url: str,
    *,
    port: int,
    mutations: str,
    raw_files: str,
    octopoes: bool,
    tail: str,
) -> Path:
    """A config that runs every part of the daemon against RabbitMQ and the loopback KAT services; `tail`
    holds the test's own [recurring]/[schedulers] keys."""
    octopoes_section = f'[octopoes]\nurl = "{kat.octopoes_url}"\n' if octopoes else ""
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "katsched.db"}"
[api]
enabled = true
port = {port}
[amqp]
enabled = true
url = "{amqp_url}"
mutations_queue = "{mutations}"
raw_files_queue = "{raw_files}"
[katalogus]
url = "{kat.katalogus_url}"
{octopoes_section}[bytes]
url = "{kat.bytes_url}"
username = "{kat.username}"
password = "{kat.password}"
{tail}"""
    )
    return path


def queued_boefje_rows(count: int, at: datetime) -> list[dict[str, Any]]:
    """`count` queued boefje tasks of org1 as table rows, for one fast INSERT (priorities 2 to 51)."""
    rows = []
    for i in range(count):
        payload = BoefjeTask(
            boefje=Boefje(id="dns"), input_ooi=f"Hostname|internet|h{i}", organization="org1"
        )
        rows.append(
            {
                "id": payload.id,
                "scheduler_id": "boefje",
                "organisation": "org1",
                "priority": i % 50 + 2,
                "status": "queued",
                "type": "boefje",
                "hash": task_hash(payload),
                "data": payload.model_dump(mode="json"),
                "created_at": at,
                "modified_at": at,
            }
        )
    return rows
