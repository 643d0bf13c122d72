"""`katsched queue`, `tasks` and `db` through the real command line, on SQLite and PostgreSQL."""

import json
from pathlib import Path

import pytest

from tests.integration.support import Run

pytestmark = pytest.mark.integration


@pytest.fixture
def config_file(database_config: Path) -> Path:
    return database_config


DNS = (
    '{"boefje": {"id": "dns-records"}, "input_ooi": "Hostname|internet|example.com", "organization": "org1"}'
)


def push(katsched: Run, data: str = DNS, *extra: str) -> dict:
    result = katsched("queue", "push", "-s", "boefje", "-o", "org1", "--data", data, "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_push_ls_peek_pop_round_trip(katsched: Run) -> None:
    pushed = push(katsched, DNS, "--priority", "3")
    assert pushed["status"] == "queued" and pushed["hash"] == "74956880324db1838156e1ebf7847448"
    listed = json.loads(katsched("queue", "ls", "--json").stdout)
    assert listed["count"] == 1 and listed["results"][0]["id"] == pushed["id"]
    peeked = json.loads(katsched("queue", "peek", "-s", "boefje", "--json").stdout)
    assert [t["id"] for t in peeked] == [pushed["id"]]
    popped = json.loads(katsched("queue", "pop", "-s", "boefje", "--json").stdout)
    assert [(t["id"], t["status"]) for t in popped] == [(pushed["id"], "dispatched")]
    assert json.loads(katsched("queue", "pop", "-s", "boefje", "--json").stdout) == []
    stats = json.loads(katsched("queue", "stats", "--json").stdout)
    assert stats["boefje"]["dispatched"] == 1 and stats["boefje"]["queued"] == 0


def test_people_get_tables_that_use_the_terminal_width(katsched: Run) -> None:
    task_id = push(katsched)["id"]
    wide = katsched("queue", "ls", columns=160)
    assert wide.returncode == 0
    assert "dns-records on Hostname|internet|example.com" in wide.stdout
    assert "1 of 1 queued tasks" in wide.stdout and task_id in wide.stdout and "boefje/org1" in wide.stdout
    narrow = katsched("queue", "ls", columns=80)
    assert task_id[:8] in narrow.stdout and "boefje/org1" in narrow.stdout  # abbreviated, never dropped
    assert "dns-records" in narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80


def test_data_from_a_file_and_from_stdin(katsched: Run, tmp_path: Path) -> None:
    data_file = tmp_path / "task.json"
    data_file.write_text(DNS.replace("org1", "org2"))
    from_file = katsched("queue", "push", "-s", "boefje", "-o", "org2", "--data", f"@{data_file}", "--json")
    assert json.loads(from_file.stdout)["organisation"] == "org2"
    from_stdin = katsched("queue", "push", "-s", "boefje", "-o", "org1", "--data", "-", "--json", stdin=DNS)
    assert json.loads(from_stdin.stdout)["data"]["input_ooi"] == "Hostname|internet|example.com"


def test_pop_with_a_filter(katsched: Run) -> None:
    push(katsched)
    push(katsched, DNS.replace("dns-records", "nmap"))
    filters = '[{"column": "data", "field": "boefje__id", "operator": "==", "value": "nmap"}]'
    popped = json.loads(
        katsched("queue", "pop", "-s", "boefje", "-n", "5", "--filter", filters, "--json").stdout
    )
    assert [t["data"]["boefje"]["id"] for t in popped] == ["nmap"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("queue", "push", "-s", "boefje", "-o", "org1", "--data", "{nope"), 2, "not valid JSON"),
        (("queue", "push", "-s", "boefje", "-o", "org1", "--data", "{}"), 2, "not a valid BoefjeTask"),
        (
            ("queue", "push", "-s", "boefje", "-o", "org1", "--priority", "0", "--data", DNS),
            2,
            "non-zero priority",
        ),
        (("queue", "push", "-s", "boefje", "-o", "org1", "--data", "@/does/not/exist"), 2, "cannot read"),
        (
            (
                "queue",
                "pop",
                "-s",
                "boefje",
                "--filter",
                '[{"column": "nope", "operator": "==", "value": 1}]',
            ),
            2,
            "nope",
        ),
        (("queue", "pop", "-s", "nope"), 2, "nope"),
        (("tasks", "show", "00000000-0000-0000-0000-000000000001"), 3, "task not found"),
    ],
)
def test_errors_are_one_line_with_a_stable_exit_code(
    katsched: Run, args: tuple[str, ...], code: int, message: str
) -> None:
    result = katsched(*args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_duplicate_push_is_refused_with_its_own_exit_code(katsched: Run) -> None:
    push(katsched)
    result = katsched("queue", "push", "-s", "boefje", "-o", "org1", "--data", DNS)
    assert result.returncode == 4


def test_tasks_show_set_status_and_cancel(katsched: Run) -> None:
    task_id = push(katsched)["id"]
    bad = katsched("tasks", "set-status", task_id, "running")
    assert bad.returncode == 6 and "cannot change status from queued to running" in bad.stderr
    katsched("queue", "pop", "-s", "boefje")
    assert katsched("tasks", "set-status", task_id, "running", "--reason", "started").returncode == 0
    shown = json.loads(katsched("tasks", "show", task_id, "--json").stdout)
    assert shown["status"] == "running"
    assert shown["popped_by"]["address"] == "cli" and shown["popped_by"]["agent"].startswith("katsched/")
    assert [h["status"] for h in shown["history"]] == ["queued", "dispatched", "running"]
    assert shown["history"][-1]["reason"] == "started"
    assert json.loads(katsched("tasks", "cancel", task_id, "--json").stdout)["status"] == "cancelled"
    assert katsched("tasks", "cancel", task_id).returncode == 0  # repeating a finished status is accepted
    again = katsched("tasks", "set-status", task_id, "running")
    assert again.returncode == 6 and "the task is finished" in again.stderr
    shown_to_people = katsched("tasks", "show", task_id).stdout
    assert "history" in shown_to_people and "popped by cli (katsched/" in shown_to_people


def test_db_upgrade_reports_the_head_revision(katsched: Run) -> None:
    from katsched.store.migrate import head_revision

    result = katsched("db", "upgrade")
    assert result.returncode == 0
    assert result.stdout.strip() == f"database at revision {head_revision()}"
