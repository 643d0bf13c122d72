"""The command line never surprises: --version, one-line usage errors, --json errors as one document, the
queued twin named, organisations that agree, id prefixes, 80-column tables, one timestamp format. Through the
real CLI in a subprocess, on SQLite and PostgreSQL."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from katsched.cli import COMMANDS
from tests.integration.support import Run
from tests.integration.test_cli_queue import DNS, push

pytestmark = pytest.mark.integration

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
LOOKS_LIKE_A_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d")


@pytest.fixture
def config_file(database_config: Path) -> Path:
    return database_config


def test_version(katsched: Run) -> None:
    from katsched import __version__

    result = katsched("--version", config=False)
    assert (result.returncode, result.stdout) == (0, f"katsched {__version__}\n")


def test_every_command_takes_config(katsched: Run, config_file: Path) -> None:
    for name in COMMANDS:
        group = katsched(name, "--help", config=False)
        subcommands = re.findall(r"^  ([a-z-]+)  ", group.stdout.split("Commands:")[-1], re.MULTILINE)
        for sub in subcommands if "Commands:" in group.stdout else [None]:
            args = (name, sub) if sub else (name,)
            if args in {("config", "from-env"), ("events", "publish-test")}:
                continue  # from-env reads the environment, not a file; publish-test is a group, checked below
            assert "--config" in katsched(*args, "--help", config=False).stdout, args
    for event in ("mutation", "raw-file"):
        assert "--config" in katsched("events", "publish-test", event, "--help", config=False).stdout
    assert katsched("config", "check", "--config", str(config_file), config=False).stdout == (
        f"ok: {config_file}\n"
    )
    positional = katsched("config", "check", str(config_file), config=False)
    assert positional.returncode == 0, positional.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("queue", "push", "-s", "boefje", "--data", "{}"), "queue push: Missing option '--org' / '-o'."),
        (("queue", "ls", "--limit", "x"), "queue ls: Invalid value for '--limit' / '-n': "),
        (("queue", "pop", "-s", "nope"), "queue pop: Invalid value for '--scheduler' / '-s': "),
        (("nope",), "No such command 'nope'."),
    ],
)
def test_usage_errors_are_one_line(katsched: Run, args: tuple[str, ...], message: str) -> None:
    result = katsched(*args)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"katsched: error: {message}"), result.stderr
    assert "--help`)" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("queue", "push", "-s", "boefje", "--data", "{}"), 2, "queue push: Missing option '--org'"),
        (("queue", "push", "-s", "boefje", "-o", "org1", "--data", "{nope"), 2, "not valid JSON"),
        (("tasks", "show", "00000000-0000-0000-0000-000000000001"), 3, "task not found"),
    ],
)
def test_json_errors_are_one_document(katsched: Run, args: tuple[str, ...], code: int, message: str) -> None:
    result = katsched(*args, "--json")
    assert result.returncode == code
    assert result.stdout == ""
    document = json.loads(result.stderr)
    assert set(document) == {"error", "code"} and document["code"] == code
    assert message in document["error"]


def test_a_duplicate_push_names_the_queued_twin(katsched: Run) -> None:
    twin = push(katsched)["id"]
    result = katsched("queue", "push", "-s", "boefje", "-o", "org1", "--data", DNS)
    assert result.returncode == 4
    assert f"task {twin} with the same identity is already queued on boefje" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_organisations_that_disagree_are_refused(katsched: Run) -> None:
    result = katsched("queue", "push", "-s", "boefje", "-o", "acme", "--data", DNS)
    assert result.returncode == 2
    assert result.stderr == (
        'katsched: error: --org is acme but --data says "organization": "org1"; give one value\n'
    )
    assert json.loads(katsched("queue", "ls", "--json").stdout)["count"] == 0


def test_unique_id_prefixes_are_accepted(katsched: Run) -> None:
    task_id = push(katsched)["id"]
    for prefix in (task_id[:4], task_id[:8].upper(), task_id[:13]):
        shown = katsched("tasks", "show", prefix, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["id"] == task_id
    assert katsched("tasks", "cancel", task_id[:6]).returncode == 0


def test_ambiguous_and_malformed_prefixes(katsched: Run) -> None:
    for n, boefje in ((1, "dns-records"), (2, "nmap")):  # data.id sets the task id
        data = json.loads(DNS) | {"id": f"abcd1234-0000-4000-8000-00000000000{n}", "boefje": {"id": boefje}}
        push(katsched, json.dumps(data))
    ambiguous = katsched("tasks", "show", "abcd1234")
    assert ambiguous.returncode == 2
    assert (
        "abcd1234 is ambiguous: it starts the ids abcd1234-0000-4000-8000-000000000001, " in ambiguous.stderr
    )
    one = katsched("tasks", "show", "abcd1234-0000-4000-8000-000000000002", "--json")
    assert json.loads(one.stdout)["data"]["boefje"]["id"] == "nmap"
    short = katsched("tasks", "show", "abc")
    assert short.returncode == 2 and "first 4 or more of its hex digits" in short.stderr
    not_hex = katsched("tasks", "show", "wxyz1234")
    assert not_hex.returncode == 2 and "not a task id" in not_hex.stderr
    missing = katsched("tasks", "show", "ffff")
    assert missing.returncode == 3 and "no task id starts with ffff" in missing.stderr


def test_queue_stats_fit_80_columns_with_every_header(katsched: Run) -> None:
    push(katsched)
    result = katsched("queue", "stats", columns=80)
    assert result.returncode == 0
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for word in ("boefje", "normalizer", "report", "dispatched", "completed", "cancelled"):
        assert word in result.stdout


def timestamps(document: Any) -> list[str]:
    """Every string in `document` that looks like a date and time."""
    if isinstance(document, dict):
        return [t for value in document.values() for t in timestamps(value)]
    if isinstance(document, list):
        return [t for value in document for t in timestamps(value)]
    return [document] if isinstance(document, str) and LOOKS_LIKE_A_TIME.match(document) else []


def test_one_timestamp_format_in_every_json_output(katsched: Run) -> None:
    task_id = push(katsched)["id"]
    katsched("queue", "pop", "-s", "boefje")
    outputs = [
        katsched("queue", "ls", "--status", "dispatched", "--json"),
        katsched("tasks", "show", task_id, "--json"),
        katsched("tasks", "set-status", task_id, "running", "--json"),
        katsched("status", "--json"),
    ]
    seen = []
    for output in outputs:
        assert output.returncode == 0, output.stderr
        seen += timestamps(json.loads(output.stdout))
    assert len(seen) >= 8
    assert [t for t in seen if not ISO_Z.match(t)] == []
