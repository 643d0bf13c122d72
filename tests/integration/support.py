"""What several integration test modules share."""

import subprocess
from collections.abc import Callable
from pathlib import Path

from katsched.core.models import Plugin
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
