"""A stand-in for an OpenKAT scheduler database (reference §1.9), built with our own DDL at revision 0008 or
0010 and filled with a realistic mix. Shared by the import tests and bench/import_mula.py.

The hashes are computed here with mmh3 directly, not with katsched's hashing module, so the import's
verification is checked against an independent computation. At 0008 the `organisation` columns do not exist
yet (0009 added and filled them); 0010 adds the partial index on queued tasks.
"""

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import mmh3
from sqlalchemy import Connection, text

ORGS = ("org1", "org2", "org3")
BOEFJES = ("dns-records", "nmap", "ssl-certificates")
STATUSES = ("PENDING", "QUEUED", "DISPATCHED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")
ACTIVE = ("QUEUED", "DISPATCHED", "RUNNING")
CRONS = ("0 0 * * *", "*/30 * * * *", "0 6 * * 1")

_ENUM = (
    "CREATE TYPE taskstatus AS ENUM "
    "('PENDING', 'QUEUED', 'DISPATCHED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')"
)
_SCHEDULES = """CREATE TABLE schedules (
    id uuid PRIMARY KEY, scheduler_id varchar NOT NULL, hash varchar(32) UNIQUE, data jsonb NOT NULL,
    enabled boolean NOT NULL, schedule varchar, deadline_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(), modified_at timestamptz NOT NULL DEFAULT now() {org})"""
_TASKS = """CREATE TABLE tasks (
    id uuid PRIMARY KEY, scheduler_id varchar NOT NULL, status taskstatus NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), modified_at timestamptz NOT NULL DEFAULT now(),
    type varchar NOT NULL, schedule_id uuid REFERENCES schedules (id) ON DELETE SET NULL, hash varchar(32),
    priority integer, data jsonb NOT NULL {org})"""


def create_schema(connection: Connection, revision: str) -> None:
    org = ", organisation varchar NOT NULL" if revision >= "0009" else ""
    for statement in (
        _ENUM,
        _SCHEDULES.format(org=org),
        _TASKS.format(org=org),
        "CREATE INDEX ix_tasks_hash ON tasks (hash)",
        "CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY)",
    ):
        connection.execute(text(statement))
    if revision >= "0010":
        connection.execute(
            text(
                "CREATE INDEX ix_tasks_status_queued ON tasks (scheduler_id, status) WHERE status = 'QUEUED'"
            )
        )
    connection.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": revision})


def mula_hash(key: str) -> str:
    return bytes(mmh3.hash_bytes(key.encode("utf-8"))).hex()


@dataclass
class Original:
    """What was written, for the tests' expectations."""

    revision: str
    now: datetime
    schedules: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    bad_hash_schedules: set[uuid.UUID] = field(default_factory=set)


def _stamp(moment: datetime) -> str:
    return moment.isoformat()


def boefje_data(rng: random.Random, org: str, index: int) -> dict[str, Any]:
    no_ooi = index < len(ORGS)  # a boefje that takes no object: one per organisation (the hash is per org)
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "boefje": {"id": BOEFJES[index % len(BOEFJES)], "name": None, "version": None, "oci_image": None},
        "input_ooi": None if no_ooi else f"Hostname|internet|h{index}.{org}.example",
        "organization": org,
        "deduplication_key": None,
        "dispatches": [],
    }


def boefje_key(data: dict[str, Any]) -> str:
    prefix = f"{data['input_ooi']}-" if data["input_ooi"] else ""
    return f"{prefix}{data['boefje']['id']}-{data['organization']}"


def normalizer_data(rng: random.Random, org: str, ended_at: datetime) -> dict[str, Any]:
    meta_id = str(uuid.UUID(int=rng.getrandbits(128)))
    meta = {
        "id": meta_id,
        "boefje": {"id": "dns-records", "version": None},
        "input_ooi": f"Hostname|internet|n{rng.randrange(500)}.{org}.example",
        "arguments": {},
        "organization": org,
        "started_at": _stamp(ended_at - timedelta(seconds=30)),
        "ended_at": _stamp(ended_at),
    }
    raw = {
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "boefje_meta": meta,
        "mime_types": [{"value": "boefje/dns-records"}],
    }
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "normalizer": {"id": "kat_dns_normalize", "version": None},
        "raw_data": raw,
    }


class Builder:
    """Deterministic rows: the same seed gives the same database."""

    def __init__(self, revision: str, now: datetime, seed: int = 13) -> None:
        self.rng = random.Random(seed)
        self.original = Original(revision, now)
        self.now = now

    def _scheduler_id(self, kind: str, org: str) -> str:
        return f"{kind}-{org}" if self.rng.random() < 0.2 else kind  # the older per-organisation ids

    def schedules(self, count: int) -> None:
        for index in range(count):
            org = ORGS[index % len(ORGS)]
            if index % 7 == 6:
                self._report_schedule(index, org)
            else:
                self._boefje_schedule(index, org)
        for row in self.original.schedules[5:8]:  # hashes that are not what katsched computes: reported
            row["hash"] = mula_hash(f"not-{row['hash']}")
            self.original.bad_hash_schedules.add(row["id"])

    def _common(self, org: str, kind: str) -> dict[str, Any]:
        created = self.now - timedelta(days=self.rng.uniform(1, 60))
        return {
            "id": uuid.UUID(int=self.rng.getrandbits(128)),
            "scheduler_id": self._scheduler_id(kind, org),
            "organisation": org,
            "enabled": self.rng.random() > 0.1,
            "created_at": created,
            "modified_at": created + timedelta(hours=self.rng.uniform(0, 24)),
        }

    def _boefje_schedule(self, index: int, org: str) -> None:
        data = boefje_data(self.rng, org, index)
        row = self._common(org, "boefje") | {"data": data, "hash": mula_hash(boefje_key(data))}
        row["schedule"] = self.rng.choice(CRONS) if self.rng.random() < 0.3 else None
        row["deadline_at"] = self.now + timedelta(hours=self.rng.uniform(-48, 48))
        self.original.schedules.append(row)

    def _report_schedule(self, index: int, org: str) -> None:
        recipe = str(uuid.UUID(int=self.rng.getrandbits(128)))
        data = {"report_recipe_id": recipe, "organisation_id": org, "type": "report"}  # rocky adds "type"
        row = self._common(org, "report") | {"data": data, "hash": mula_hash(f"{recipe}-{org}")}
        one_off = self.rng.random() < 0.4
        row["schedule"] = None if one_off else self.rng.choice(CRONS)
        row["deadline_at"] = None if one_off else self.now + timedelta(hours=self.rng.uniform(-48, 48))
        self.original.schedules.append(row)

    def tasks(self, count: int) -> None:
        """Tasks in every status: history of the schedules' work, one active task for some schedules, and
        normalizer and report tasks; created in bursts that share a timestamp, as one push loop made them."""
        schedules = [
            row for row in self.original.schedules if row["id"] not in self.original.bad_hash_schedules
        ]
        active: set[uuid.UUID] = set()
        burst = self.now - timedelta(days=30)
        for index in range(count):
            if index % 50 == 0:
                burst = self.now - timedelta(days=self.rng.uniform(0, 30))
            kind = self.rng.choices(("boefje", "normalizer", "report"), (7, 2, 1))[0]
            status = self.rng.choices(STATUSES, (1, 10, 3, 3, 60, 15, 8))[0]
            if kind == "boefje":
                row = self._boefje_task(schedules, status, active, burst)
            else:
                row = self._other_task(kind, status, burst)
            self.original.tasks.append(row)

    def _task(self, kind: str, org: str, status: str, created: datetime) -> dict[str, Any]:
        task_id = uuid.UUID(int=self.rng.getrandbits(128))
        modified = (
            created
            if status in ("PENDING", "QUEUED")
            else created + timedelta(minutes=self.rng.uniform(0, 90))
        )
        return {
            "id": task_id,
            "scheduler_id": self._scheduler_id(kind, org),
            "organisation": org,
            "status": status,
            "type": kind,
            "schedule_id": None,
            "created_at": created,
            "modified_at": min(modified, self.now),
        }

    def _boefje_task(
        self, schedules: list[dict[str, Any]], status: str, active: set[uuid.UUID], created: datetime
    ) -> dict[str, Any]:
        boefje_schedules = [row for row in schedules if row["data"].get("boefje")]
        schedule = self.rng.choice(boefje_schedules)
        if status in ACTIVE and schedule["id"] in active:
            status = "COMPLETED"  # the original allowed one active task per schedule (0011 enforces it)
        org = schedule["organisation"]
        row = self._task("boefje", org, status, created)
        data = dict(schedule["data"], id=str(row["id"]))
        manual = self.rng.random() < 0.05
        row |= {"data": data, "hash": schedule["hash"], "schedule_id": schedule["id"]}
        row["priority"] = 1 if manual else int(created.timestamp())  # BoefjeRankerTimeBased: FIFO
        if status in ACTIVE:
            active.add(schedule["id"])
        return row

    def _other_task(self, kind: str, status: str, created: datetime) -> dict[str, Any]:
        org = self.rng.choice(ORGS)
        row = self._task(kind, org, status, created)
        if kind == "normalizer":
            ended = created - timedelta(seconds=self.rng.uniform(1, 600))
            data = normalizer_data(self.rng, org, ended)
            data["id"] = str(row["id"])
            meta = data["raw_data"]["boefje_meta"]
            key = f"kat_dns_normalize-{meta['id']}-{org}"
            return row | {"data": data, "hash": mula_hash(key), "priority": int(ended.timestamp())}
        recipe = str(uuid.UUID(int=self.rng.getrandbits(128)))
        data = {"report_recipe_id": recipe, "organisation_id": org}
        return row | {
            "data": data,
            "hash": mula_hash(f"{recipe}-{org}"),
            "priority": int(created.timestamp()),
        }


def fill(connection: Connection, revision: str, now: datetime, *, schedules: int, tasks: int) -> Original:
    """The rows, written with COPY-free multi-row inserts (quick enough for 100,000 tasks)."""
    builder = Builder(revision, now)
    builder.schedules(schedules)
    builder.tasks(tasks)
    with_org = revision >= "0009"
    _insert(connection, "schedules", builder.original.schedules, with_org)
    _insert(connection, "tasks", builder.original.tasks, with_org)
    return builder.original


def _insert(connection: Connection, table: str, rows: list[dict[str, Any]], with_org: bool) -> None:
    if not rows:
        return
    columns = [name for name in rows[0] if with_org or name != "organisation"]
    casts = {"data": "CAST(:data AS jsonb)", "status": "CAST(:status AS taskstatus)"}
    values = ", ".join(casts.get(name, f":{name}") for name in columns)
    statement = text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})")
    encoded = [{**{name: row[name] for name in columns}, "data": json.dumps(row["data"])} for row in rows]
    for start in range(0, len(encoded), 5000):
        connection.execute(statement, encoded[start : start + 5000])
