"""`katsched explain` and `GET /explain` against the loopback KAT services, on SQLite and PostgreSQL: a test
per verdict (each rule that can refuse, and "would queue"), through the real command line and the API; neither
ever writes (every table's row count is the same before and after); a service that is down is named."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from katsched import wiring
from katsched.api import create_app
from katsched.clock import SystemClock
from katsched.config import Settings
from katsched.core.hashing import task_hash
from katsched.core.models import (
    OOI,
    Boefje,
    BoefjeMeta,
    BoefjeTask,
    Organisation,
    Plugin,
    RawData,
    RawDataReceivedEvent,
    TaskStatus,
)
from katsched.core.ports import TaskDraft
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.store.tables import metadata
from katsched.testing import FakeClock
from tests.contract.kat_fake_server import KatFakeServer, refused_url
from tests.world import boefje as plugin
from tests.world import hostname as _hostname

pytestmark = pytest.mark.integration

ORG = "acme"
REF = "Hostname|internet|example.com"


def hostname(level: int | None = 2) -> OOI:
    return _hostname("example.com", level)


def boefje_data(plugin_id: str = "dns-records") -> dict[str, Any]:
    task = BoefjeTask(boefje=Boefje(id=plugin_id), input_ooi=REF, organization=ORG)
    return task.model_dump(mode="json")


def bytes_run(kat: KatFakeServer, ago: timedelta, plugin_id: str = "dns-records") -> None:
    started = datetime.now(UTC) - ago
    kat.add_boefje_meta(
        BoefjeMeta(
            id=uuid.uuid4(),
            boefje=Boefje(id=plugin_id),
            input_ooi=REF,
            organization=ORG,
            started_at=started,
            ended_at=started + timedelta(minutes=1),
        )
    )


def task_in_the_past(engine: Engine, ago: timedelta, status: TaskStatus | None = None) -> uuid.UUID:
    """A dns-records task on the object, created `ago`, then (at that time) moved to `status`."""
    clock = FakeClock(datetime.now(UTC) - ago)
    queue = SqlTaskQueue(engine, clock)
    task = queue.push(TaskDraft("boefje", ORG, 5, boefje_data()))
    if status is not None:
        queue.pop("boefje")
        if status is not TaskStatus.DISPATCHED:
            queue.set_status(task.id, status)
    return task.id


@dataclass
class Case:
    """A state of the KAT services and the database, and the verdict explain must give for dns-records."""

    setup: Callable[[KatFakeServer, Engine], None]
    kind: str
    reason: str
    line: str  # a part of the verdict line
    args: tuple[str, ...] = ()


def _object(level: int | None = 2, **fields: Any) -> Callable[[KatFakeServer, Engine], None]:
    def setup(kat: KatFakeServer, engine: Engine) -> None:
        kat.add_plugin(ORG, plugin(**fields))
        kat.add_object(ORG, hostname(level))

    return setup


def _then(
    first: Callable[[KatFakeServer, Engine], None], then: Callable[[KatFakeServer, Engine], None]
) -> Callable[[KatFakeServer, Engine], None]:
    def setup(kat: KatFakeServer, engine: Engine) -> None:
        first(kat, engine)
        then(kat, engine)

    return setup


def _scheduled_and_recent(kat: KatFakeServer, engine: Engine) -> None:
    task_in_the_past(engine, timedelta(hours=1), TaskStatus.COMPLETED)
    clock = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    deadline = datetime.now(UTC) + timedelta(hours=23)
    SqlScheduleStore(engine, clock).create(
        "boefje",
        ORG,
        boefje_data(),
        task_hash(BoefjeTask.model_validate(boefje_data())),
        deadline_at=deadline,
    )


def _not_consumed(kat: KatFakeServer, engine: Engine) -> None:
    kat.add_plugin(ORG, plugin("nmap", consumes=["IPAddressV4"]))
    kat.add_object(ORG, hostname())


CASES: dict[str, Case] = {
    "would_queue": Case(_object(), "queue", "not_active", "would queue now"),
    "scan_level_too_low": Case(_object(1, scan_level=3), "blocked", "scan_level_too_low", "scan level 1 < 3"),
    "plugin_disabled": Case(_object(enabled=False), "blocked", "plugin_disabled", "boefje disabled"),
    "no_scan_profile": Case(_object(None), "blocked", "no_scan_profile", "no scan profile"),
    "plugin_scan_level_unknown": Case(
        _object(scan_level=None), "blocked", "plugin_scan_level_unknown", "has no scan level"
    ),
    "run_on_excludes_update": Case(
        _object(run_on=["create"]), "blocked", "run_on_excludes_update", "run_on ['create'] excludes update"
    ),
    "run_on_excludes_create": Case(
        _object(run_on=["update"]),
        "blocked",
        "run_on_excludes_create",
        "run_on ['update'] excludes create",
        ("--operation", "create"),
    ),
    "within_grace_period_by_bytes": Case(
        _then(_object(), lambda kat, engine: bytes_run(kat, timedelta(hours=1))),
        "wait",
        "within_grace_period",
        "waits: grace period ends at",
    ),
    "within_grace_period_scheduled": Case(
        _then(_object(), _scheduled_and_recent), "wait", "within_grace_period", "next run at"
    ),
    "within_interval": Case(
        _then(_object(interval=60), lambda kat, engine: bytes_run(kat, timedelta(minutes=10))),
        "wait",
        "within_interval",
        "interval ends at",
    ),
    "already_active": Case(
        _then(_object(), lambda kat, engine: task_in_the_past(engine, timedelta(days=2))),
        "active",
        "already_active",
        "already active: task",
    ),
    "previous_stalled": Case(
        _then(
            _object(),
            lambda kat, engine: task_in_the_past(engine, timedelta(days=2), TaskStatus.DISPATCHED),
        ),
        "queue",
        "previous_stalled",
        "would queue now (the previous task lost its lease)",
    ),
    "not_consumed": Case(
        _not_consumed, "blocked", "not_consumed", "does not take Hostname objects", ("--boefje", "nmap")
    ),
}


# -- the fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def kat() -> Iterator[KatFakeServer]:
    with KatFakeServer() as server:
        server.add_organisation(Organisation(id=ORG, name="Acme"))
        yield server


def database_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def write_config(
    tmp_path: Path,
    engine: Engine,
    kat: KatFakeServer,
    *,
    octopoes: str | None = None,
    bytes_url: str | None = None,
) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[database]
url = "{database_url(engine)}"
[katalogus]
url = "{kat.katalogus_url}"
[octopoes]
url = "{octopoes or kat.octopoes_url}"
[bytes]
url = "{bytes_url or kat.bytes_url}"
username = "{kat.username}"
password = "{kat.password}"
"""
    )
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "katsched", "explain", *args, "--config", str(config)]
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env)


def settings_for(config: Path) -> Settings:
    from katsched.config import load_settings

    return load_settings(config)


@pytest.fixture
def api_for(engine: Engine) -> Iterator[Callable[..., TestClient]]:
    """An API whose `/explain` runs on the planners the daemon would build from the config."""
    opened: list[tuple[TestClient, wiring.Services]] = []

    def make(config: Path, token: str | None = None) -> TestClient:
        settings, clock = settings_for(config), SystemClock()
        core = wiring.build_core(settings, engine, clock)
        explainer = core.planners.explainer
        app = create_app(core.queue, core.schedules, clock, token=token, explainer=explainer)
        client = TestClient(app)
        opened.append((client, core.services))
        return client

    yield make
    for client, services in opened:
        client.close()
        services.close()


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in metadata.sorted_tables
        }


def only_entry(document: dict[str, Any]) -> dict[str, Any]:
    entries = [entry for entry in document["boefjes"] if entry["boefje"] in ("dns-records", "nmap")]
    assert len(entries) == 1, document
    return entries[0]


def check(entry: dict[str, Any], case: Case) -> None:
    assert (entry["kind"], entry["reason"]) == (case.kind, case.reason), entry
    assert case.line in entry["verdict"], entry["verdict"]


# -- a test per verdict ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_verdict_through_the_command_line(
    name: str, engine: Engine, kat: KatFakeServer, tmp_path: Path
) -> None:
    case = CASES[name]
    case.setup(kat, engine)
    config = write_config(tmp_path, engine, kat)
    before = row_counts(engine)
    result = cli(config, ORG, REF, "--json", *case.args)
    assert result.returncode == 0, result.stderr
    check(only_entry(json.loads(result.stdout)), case)
    assert row_counts(engine) == before


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_verdict_through_the_api(
    name: str, engine: Engine, kat: KatFakeServer, tmp_path: Path, api_for: Callable[..., TestClient]
) -> None:
    case = CASES[name]
    case.setup(kat, engine)
    client = api_for(write_config(tmp_path, engine, kat))
    params = {"organisation": ORG, "ooi": REF}
    flags = dict(zip(case.args[::2], case.args[1::2], strict=True))
    params |= {key.removeprefix("--"): value for key, value in flags.items()}
    before = row_counts(engine)
    response = client.get("/explain", params=params)
    assert response.status_code == 200, response.text
    check(only_entry(response.json()), case)
    assert row_counts(engine) == before


def test_katsched_api_alone_serves_explain(engine: Engine, kat: KatFakeServer, tmp_path: Path) -> None:
    """`katsched api` (no daemon) builds the explainer and its KAT clients as the daemon does (issue 14)."""
    case = CASES["scan_level_too_low"]
    case.setup(kat, engine)
    config = write_config(tmp_path, engine, kat)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "katsched", "api", "--config", str(config), "--port", str(port)]
    before = row_counts(engine)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):  # bounded: the process imports, migrates, then listens
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("katsched api did not start")
        response = httpx.get(f"{url}/explain", params={"organisation": ORG, "ooi": REF}, timeout=30)
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert response.status_code == 200, response.text
    check(only_entry(response.json()), case)
    assert row_counts(engine) == before
    assert process.returncode == 0, err


# -- a service that is down ----------------------------------------------------------------------------------


def test_octopoes_down_is_named_and_the_rest_is_told(
    engine: Engine, kat: KatFakeServer, tmp_path: Path, api_for: Callable[..., TestClient]
) -> None:
    kat.add_plugin(ORG, plugin())
    kat.add_plugin(ORG, plugin("off", enabled=False))
    config = write_config(tmp_path, engine, kat, octopoes=refused_url())
    before = row_counts(engine)
    result = cli(config, ORG, REF, "--json")
    assert result.returncode == 8, result.stderr
    assert "partial answer: unavailable: octopoes" in result.stderr
    document = json.loads(result.stdout)
    assert set(document["unavailable"]) == {"octopoes"}
    verdicts = {entry["boefje"]: (entry["kind"], entry["verdict"]) for entry in document["boefjes"]}
    assert verdicts == {
        "dns-records": ("unknown", "unknown: octopoes is unavailable"),
        "off": ("blocked", "blocked: boefje disabled in this organisation"),
    }
    response = api_for(config).get("/explain", params={"organisation": ORG, "ooi": REF})
    assert response.status_code == 200
    assert set(response.json()["unavailable"]) == {"octopoes"}
    assert row_counts(engine) == before


def test_bytes_down_defers_what_needs_it(engine: Engine, kat: KatFakeServer, tmp_path: Path) -> None:
    kat.add_plugin(ORG, plugin())
    kat.add_plugin(ORG, plugin("nmap", scan_level=4))
    kat.add_object(ORG, hostname(2))
    result = cli(write_config(tmp_path, engine, kat, bytes_url=refused_url()), ORG, REF, "--json")
    assert result.returncode == 8, result.stderr
    document = json.loads(result.stdout)
    assert set(document["unavailable"]) == {"bytes"}
    verdicts = {entry["boefje"]: entry["verdict"] for entry in document["boefjes"]}
    assert verdicts == {
        "dns-records": "deferred: bytes is unavailable; the planner would try again",
        "nmap": "blocked: scan level 2 < 4",
    }


def test_katalogus_down_leaves_the_object_facts(engine: Engine, kat: KatFakeServer, tmp_path: Path) -> None:
    kat.add_object(ORG, hostname(3))
    kat.fail_next(100, status=503, path_prefix="/katalogus")
    result = cli(write_config(tmp_path, engine, kat), ORG, REF, "--json")
    assert result.returncode == 8, result.stderr
    document = json.loads(result.stdout)
    assert set(document["unavailable"]) == {"katalogus"}
    assert (document["object_scan_level"], document["boefjes"]) == (3, [])


# -- what people read, and bad input -------------------------------------------------------------------------


def test_people_get_a_verdict_line_and_the_facts_under_it(
    engine: Engine, kat: KatFakeServer, tmp_path: Path
) -> None:
    kat.add_plugin(ORG, plugin())
    kat.add_plugin(ORG, plugin("nmap", scan_level=3))
    kat.add_object(ORG, hostname(1))
    bytes_run(kat, timedelta(days=3))
    result = cli(write_config(tmp_path, engine, kat), ORG, REF)
    assert result.returncode == 0, result.stderr
    assert "dns-records: would queue now" in result.stdout
    assert "nmap: blocked: scan level 1 < 3" in result.stdout
    assert "last run: " in result.stdout and "(bytes)" in result.stdout
    assert "schedule: none" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            (ORG, "Hostname|internet|nowhere.example"),
            3,
            "object 'Hostname|internet|nowhere.example' not found",
        ),
        ((ORG, REF, "--boefje", "nope"), 3, "boefje 'nope' not found in organisation 'acme'"),
        ((ORG,), 2, "give an object reference (OOI) or --raw RAW_ID"),
        ((ORG, REF, "--operation", "delete"), 2, "--operation must be create or update"),
        ((ORG, "--raw", str(uuid.UUID(int=7))), 3, "raw file 00000000-0000-0000-0000-000000000007"),
    ],
)
def test_bad_questions_get_one_line_and_an_exit_code(
    args: tuple[str, ...], code: int, message: str, engine: Engine, kat: KatFakeServer, tmp_path: Path
) -> None:
    kat.add_plugin(ORG, plugin())
    kat.add_object(ORG, hostname())
    result = cli(write_config(tmp_path, engine, kat), *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_the_api_answers_bad_questions_and_keeps_its_token(
    engine: Engine, kat: KatFakeServer, tmp_path: Path, api_for: Callable[..., TestClient]
) -> None:
    kat.add_plugin(ORG, plugin())
    kat.add_object(ORG, hostname())
    client = api_for(write_config(tmp_path, engine, kat), token="s3cret")
    assert client.get("/explain", params={"organisation": ORG, "ooi": REF}).status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    both = client.get(
        "/explain", params={"organisation": ORG, "ooi": REF, "raw": str(uuid.uuid4())}, headers=auth
    )
    assert both.status_code == 400 and "exactly one of ooi and raw" in both.json()["detail"]
    missing = client.get("/explain", params={"organisation": ORG, "ooi": "Hostname|internet|x"}, headers=auth)
    assert missing.status_code == 404 and "not found in organisation" in missing.json()["detail"]
    good = client.get("/explain", params={"organisation": ORG, "ooi": REF}, headers=auth)
    assert good.status_code == 200 and good.json()["boefjes"][0]["verdict"] == "would queue now"


# -- normalizers ---------------------------------------------------------------------------------------------


def raw_file(*mime_types: str) -> RawDataReceivedEvent:
    ended = datetime.now(UTC) - timedelta(minutes=5)
    meta = BoefjeMeta(
        id=uuid.uuid4(),
        boefje=Boefje(id="dns-records"),
        input_ooi=REF,
        organization=ORG,
        started_at=ended - timedelta(minutes=1),
        ended_at=ended,
    )
    raw = RawData(id=uuid.uuid4(), boefje_meta=meta, mime_types=[{"value": m} for m in mime_types])
    return RawDataReceivedEvent(created_at=ended, organization=ORG, raw_data=raw)


def normalizer(plugin_id: str, enabled: bool = True) -> Plugin:
    return Plugin(id=plugin_id, type="normalizer", enabled=enabled, consumes=["text/plain"], produces=[])


def plan_raw_file(config: Path, engine: Engine, event: RawDataReceivedEvent) -> None:
    settings, clock = settings_for(config), SystemClock()
    core = wiring.build_core(settings, engine, clock)
    try:
        core.planners.normalizer.plan_for_raw_file(event)
    finally:
        core.services.close()


def test_a_raw_file_says_what_became_of_each_normalizer(
    engine: Engine, kat: KatFakeServer, tmp_path: Path, api_for: Callable[..., TestClient]
) -> None:
    kat.add_plugin(ORG, normalizer("kat_dns_normalize"))
    kat.add_plugin(ORG, normalizer("off", enabled=False))
    config = write_config(tmp_path, engine, kat)
    event = raw_file("text/plain")
    plan_raw_file(config, engine, event)
    kat.add_plugin(ORG, normalizer("new"))  # enabled since: it would queue now
    before = row_counts(engine)
    result = cli(config, ORG, "--raw", str(event.raw_data.id), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["mime_types"] == ["text/plain"]
    entries = {entry["normalizer"]: entry for entry in document["normalizers"]}
    assert entries["kat_dns_normalize"]["kind"] == "planned"
    assert entries["kat_dns_normalize"]["verdict"].startswith("planned: task ")
    assert entries["kat_dns_normalize"]["task"]["status"] == "queued"
    assert entries["off"]["verdict"] == "blocked: normalizer disabled in this organisation"
    assert entries["off"]["last_decision"]["reason"] == "plugin_disabled"
    assert entries["new"]["verdict"] == "would queue now" and entries["new"]["task"] is None
    response = api_for(config).get("/explain", params={"organisation": ORG, "raw": str(event.raw_data.id)})
    assert response.status_code == 200 and response.json()["normalizers"] == document["normalizers"]
    assert row_counts(engine) == before


def test_a_raw_file_that_records_a_failure_is_not_normalised(
    engine: Engine, kat: KatFakeServer, tmp_path: Path
) -> None:
    kat.add_plugin(ORG, normalizer("kat_dns_normalize"))
    config = write_config(tmp_path, engine, kat)
    event = raw_file("error/boefje")
    plan_raw_file(config, engine, event)
    result = cli(config, ORG, "--raw", str(event.raw_data.id), "--json")
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)["normalizers"]
    assert entry["verdict"] == "blocked: the raw file records a boefje failure (error/… mime type)"


# -- who holds an active task --------------------------------------------------------------------------------

RUNNER_AGENT = "boefje-runner/1.2 (acme-scanner-3)"


def popped_by_a_runner(client: TestClient, engine: Engine) -> uuid.UUID:
    """A dns-records task pushed two days ago (past the grace period), popped now through the API by a runner
    with a known User-Agent."""
    task_id = task_in_the_past(engine, timedelta(days=2))
    response = client.post("/schedulers/boefje/pop", headers={"User-Agent": RUNNER_AGENT})
    assert [popped["id"] for popped in response.json()["results"]] == [str(task_id)]
    return task_id


def check_held(entry: dict[str, Any], task_id: uuid.UUID, status: str) -> None:
    assert (entry["kind"], entry["reason"]) == ("active", "already_active"), entry
    active = entry["active_task"]
    assert (active["id"], active["status"]) == (str(task_id), status)
    runner = active["popped_by"]
    assert (runner["address"], runner["agent"]) == ("testclient", RUNNER_AGENT)
    popped_at = datetime.fromisoformat(runner["at"].replace("Z", "+00:00"))
    assert timedelta(0) <= datetime.now(UTC) - popped_at < timedelta(minutes=5)
    assert entry["verdict"].endswith(f"held by testclient ({RUNNER_AGENT})"), entry["verdict"]


def test_an_active_task_names_the_runner_that_holds_it(
    engine: Engine, kat: KatFakeServer, tmp_path: Path, api_for: Callable[..., TestClient]
) -> None:
    kat.add_plugin(ORG, plugin())
    kat.add_object(ORG, hostname())
    config = write_config(tmp_path, engine, kat)
    client = api_for(config)
    task_id = popped_by_a_runner(client, engine)
    before = row_counts(engine)

    response = client.get("/explain", params={"organisation": ORG, "ooi": REF})
    assert response.status_code == 200, response.text
    check_held(only_entry(response.json()), task_id, "dispatched")

    assert row_counts(engine) == before
    SqlTaskQueue(engine, SystemClock()).set_status(task_id, TaskStatus.RUNNING)
    before = row_counts(engine)
    result = cli(config, ORG, REF, "--json")
    assert result.returncode == 0, result.stderr
    check_held(only_entry(json.loads(result.stdout)), task_id, "running")

    text = cli(config, ORG, REF)
    assert text.returncode == 0, text.stderr
    assert f"held by testclient ({RUNNER_AGENT})" in " ".join(text.stdout.split())  # the verdict, wrapped
    assert f"  held by: testclient ({RUNNER_AGENT}), popped at " in text.stdout
    assert row_counts(engine) == before


def test_a_queued_task_is_held_by_nobody(
    engine: Engine, kat: KatFakeServer, tmp_path: Path, api_for: Callable[..., TestClient]
) -> None:
    """Put back by its runner, the task is queued again: the runner that popped it no longer holds it."""
    kat.add_plugin(ORG, plugin())
    kat.add_object(ORG, hostname())
    client = api_for(write_config(tmp_path, engine, kat))
    task_id = popped_by_a_runner(client, engine)
    SqlTaskQueue(engine, SystemClock()).set_status(task_id, TaskStatus.QUEUED, reason="pushed back")
    entry = only_entry(client.get("/explain", params={"organisation": ORG, "ooi": REF}).json())
    assert entry["active_task"]["status"] == "queued"
    assert entry["active_task"]["popped_by"] is None
    assert "held by" not in entry["verdict"]
