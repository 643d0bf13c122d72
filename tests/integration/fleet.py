"""Several `katsched daemon` processes on one PostgreSQL database, with the loopback KAT services: what the
scale-out test (`test_daemon_scaleout.py`) and `bench/scaleout.py` share.

The schedules are seeded straight into the database, not yet due, each with a task that completed two days
ago (so the grace period has passed and Bytes need not be asked); `make_due` then makes them all due at once,
after every daemon is up, so that the daemons start rescheduling together.
"""

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, insert, select, update

from katsched.core.hashing import task_hash
from katsched.core.models import OOI, Boefje, BoefjeTask, Organisation, ScanProfile
from katsched.core.transitions import ACTIVE
from katsched.store.tables import plugins_seen, schedules, tasks
from tests.contract.kat_fake_server import KatFakeServer
from tests.integration.support import HOSTNAME

BOEFJE = HOSTNAME.id
# The endpoints that rescheduling asks: the organisation's plugins (fresh, once per run), the boefje's configs
# (cross-organisation deduplication) and each object (Octopoes). The others are each daemon's own by design
# (the organisations refresh, health probes) or another job's (new-plugin enumeration, Bytes' last runs).
RESCHEDULING = {
    "katalogus": ("GET /katalogus/v1/organisations/{org}/plugins", "GET /katalogus/v1/configs"),
    "octopoes": ("GET /octopoes/{org}/object", "GET /octopoes/object-clients"),
}


def org_id(n: int) -> str:
    return f"org-{n:02d}"


def reference(org: int, n: int) -> str:
    return f"Hostname|internet|h{n}.{org_id(org)}.example"


def kat_world(organisations: int, hostnames: int) -> KatFakeServer:
    """The loopback services: each organisation has the boefje enabled and its own `hostnames` objects."""
    server = KatFakeServer()
    for o in range(organisations):
        server.add_organisation(Organisation(id=org_id(o)))
        server.add_plugin(org_id(o), HOSTNAME)
        for n in range(hostnames):
            key = reference(o, n)
            profile = ScanProfile(level=2, reference=key, scan_profile_type="declared")
            server.add_object(org_id(o), OOI(primary_key=key, object_type="Hostname", scan_profile=profile))
    return server


def seed_schedules(engine: Engine, organisations: int, hostnames: int) -> int:
    """A schedule per object (not due yet: no deadline), each with a task completed two days ago; the boefje
    counted as enumerated already, so the new-plugins job has nothing to do. How many schedules."""
    now = datetime.now(UTC)
    schedule_rows, task_rows, seen_rows = [], [], []
    for o in range(organisations):
        seen_rows.append({"organisation": org_id(o), "plugin_id": BOEFJE, "first_seen_at": now})
        for n in range(hostnames):
            task = BoefjeTask(boefje=Boefje(id=BOEFJE), input_ooi=reference(o, n), organization=org_id(o))
            data, key, schedule_id = task.model_dump(mode="json"), task_hash(task), uuid.uuid4()
            schedule_rows.append({
                "id": schedule_id, "scheduler_id": "boefje", "organisation": org_id(o), "hash": key,
                "data": data, "enabled": True, "deadline_at": None, "created_at": now, "modified_at": now,
            })  # fmt: skip
            ran = now - timedelta(days=2)
            task_rows.append({
                "id": task.id, "scheduler_id": "boefje", "schedule_id": schedule_id,
                "organisation": org_id(o), "priority": 500, "status": "completed", "type": "boefje",
                "hash": key, "data": data, "created_at": ran, "modified_at": ran,
            })  # fmt: skip
    with engine.begin() as connection:
        connection.execute(insert(schedules), schedule_rows)
        connection.execute(insert(tasks), task_rows)
        connection.execute(insert(plugins_seen), seen_rows)
    return len(schedule_rows)


def make_due(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(update(schedules).values(deadline_at=datetime.now(UTC) - timedelta(minutes=1)))


def planned(engine: Engine) -> tuple[int, int]:
    """(schedules with an active task, schedules still due or claimed): the rescheduling is done when the
    first is every schedule and the second none."""
    active = select(func.count(func.distinct(tasks.c.schedule_id))).where(
        tasks.c.status.in_([s.value for s in ACTIVE])
    )
    pending = select(func.count()).where(
        (schedules.c.deadline_at <= datetime.now(UTC)) | schedules.c.claimed_by.is_not(None)
    )
    with engine.connect() as connection:
        return int(connection.execute(active).scalar_one()), int(connection.execute(pending).scalar_one())


def tasks_per_schedule(engine: Engine) -> Counter[int]:
    """How many schedules have 1, 2, … tasks queued (the seeded completed tasks left out)."""
    statement = (
        select(tasks.c.schedule_id, func.count())
        .where(tasks.c.status != "completed")
        .group_by(tasks.c.schedule_id)
    )
    with engine.connect() as connection:
        return Counter(count for _, count in connection.execute(statement))


def rescheduling_requests(server: KatFakeServer) -> dict[str, int]:
    """The requests of the rescheduling work per service (see RESCHEDULING)."""
    hits = server.hits_by_endpoint()
    return {service: sum(hits[name] for name in names) for service, names in RESCHEDULING.items()}


def daemon_config(
    path: Path, url: str, kat: KatFakeServer, *, api_port: int, amqp: str = "", recurring: str = ""
) -> Path:
    """A daemon on the database at `url` with the loopback KAT services; rescheduling every second and the
    new-plugins job practically never (its enumeration is another job's work). `amqp`: the [amqp] keys."""
    amqp_section = f"[amqp]\nenabled = true\n{amqp}" if amqp else "[amqp]\nenabled = false\n"
    path.write_text(
        f"""
[database]
url = "{url}"
[api]
port = {api_port}
{amqp_section}
[katalogus]
url = "{kat.katalogus_url}"
[octopoes]
url = "{kat.octopoes_url}"
[bytes]
url = "{kat.bytes_url}"
username = "{kat.username}"
password = "{kat.password}"
[recurring]
reschedule_interval = 1
jitter = 0
new_plugins_interval = 100000000
{recurring}
"""
    )
    return path
