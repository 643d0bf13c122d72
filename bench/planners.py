"""Planner benchmark: due schedules and scan-profile mutations → tasks, with the KAT services on loopback.

1. Rescheduling: 10,000 due boefje schedules across 50 organisations (per organisation 40 hostnames x 5
   boefjes, each last run two days ago), the Katalogus, Octopoes and Bytes answered by the loopback fake
   server (`tests/contract/kat_fake_server.py`) through the real HTTP clients (Katalogus cache on, as
   configured by default). Reported: the time to push them all, and the requests per task to each service.
   Targets: all 10,000 in <= 10 s, <= 0.1 Katalogus requests per task.
2. Mutations: 5,000 scan-profile mutations (new hostnames, 2 boefjes each, so 10,000 tasks) planned without
   RabbitMQ, one at a time and in the consumer's batches, with the services on loopback and in memory.
   A new object has no history, so each costs one Bytes request (for both boefjes). Target: >= 1,000 tasks/s.

Reference, measured in the same run: the same kind of task pushed one per transaction with
`SqlTaskQueue.push`, the cost a planner would pay without batching (and before asking any service).

    uvx nox -s bench -- bench/planners.py      (or: python bench/planners.py [--quick])
"""

import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for the loopback fake under tests/

from katsched.clock import SystemClock
from katsched.core.hashing import task_hash
from katsched.core.models import (
    OOI,
    Boefje,
    BoefjeTask,
    MutationOperation,
    Organisation,
    Plugin,
    ScanProfile,
    ScanProfileMutation,
)
from katsched.core.ports import ObjectGraph, PluginCatalog, RawDataIndex, TaskDraft
from katsched.intake import BATCH_SIZE
from katsched.schedulers.boefje import BoefjePlanner
from katsched.store.decisions import SqlDecisionLog
from katsched.store.engine import build_engine
from katsched.store.lookups import SqlTaskStore
from katsched.store.migrate import upgrade
from katsched.store.plugins_seen import SqlSeenPlugins
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.store.tables import schedules, tasks
from katsched.testing import InMemoryCatalog, InMemoryObjectGraph, InMemoryRawDataIndex
from tests.contract.kat_fake_server import BYTES, KATALOGUS, OCTOPOES, KatFakeServer, connect

QUICK = "--quick" in sys.argv
ORGANISATIONS = 10 if QUICK else 50
HOSTNAMES = 40  # per organisation
BOEFJES = [f"boefje-{n}" for n in range(5)]
MUTATIONS = 1000 if QUICK else 5000
MUTATION_BOEFJES = BOEFJES[:2]
BATCH = BATCH_SIZE  # the RabbitMQ consumer's batch of mutations
REFERENCE_PUSHES = 1000 if QUICK else 2000
SERVICES = [("katalogus", KATALOGUS), ("octopoes", OCTOPOES), ("bytes", BYTES)]


def org_id(n: int) -> str:
    return f"org-{n:03d}"


def plugin(plugin_id: str) -> Plugin:
    return Plugin(id=plugin_id, type="boefje", enabled=True, scan_level=1, consumes=["Hostname"], produces=[])


def hostname(n: int) -> OOI:
    reference = f"Hostname|internet|host-{n}.example"
    profile = ScanProfile(level=2, reference=reference, scan_profile_type="declared")
    return OOI(primary_key=reference, object_type="Hostname", scan_profile=profile)


def fresh_engine(directory: Path, name: str) -> Engine:
    engine = build_engine(f"sqlite:///{directory / name}.db")
    upgrade(engine)
    return engine


def planner(
    engine: Engine, catalog: PluginCatalog, objects: ObjectGraph, raw_data: RawDataIndex
) -> BoefjePlanner:
    clock = SystemClock()
    return BoefjePlanner(
        tasks=SqlTaskStore(SqlTaskQueue(engine, clock)),
        schedules=SqlScheduleStore(engine, clock),
        seen=SqlSeenPlugins(engine),
        catalog=catalog,
        objects=objects,
        raw_data=raw_data,
        clock=clock,
        decisions=SqlDecisionLog(engine),  # as the daemon builds it: each decision is kept
    )


def seed_due_schedules(engine: Engine) -> int:
    """Per organisation, a schedule per (hostname, boefje) due at some time in the last day, whose previous
    task completed two days ago; written with plain inserts, as the setup is not what is measured."""
    now, rng = datetime.now().astimezone(), random.Random(7)
    schedule_rows, task_rows = [], []
    for o in range(ORGANISATIONS):
        for h in range(HOSTNAMES):
            for boefje_id in BOEFJES:
                reference = hostname(h).primary_key
                task = BoefjeTask(boefje=Boefje(id=boefje_id), input_ooi=reference, organization=org_id(o))
                data, key, schedule_id = task.model_dump(mode="json"), task_hash(task), uuid.uuid4()
                deadline = now - timedelta(seconds=rng.uniform(60, 86400))
                schedule_rows.append(_schedule_row(schedule_id, org_id(o), key, data, deadline, now))
                task_rows.append(_finished_task_row(task, schedule_id, key, data, now - timedelta(days=2)))
    with engine.begin() as connection:
        connection.execute(insert(schedules), schedule_rows)
        connection.execute(insert(tasks), task_rows)
    return len(schedule_rows)


def _schedule_row(
    schedule_id: uuid.UUID, org: str, key: str, data: dict[str, object], deadline: datetime, now: datetime
) -> dict[str, object]:
    return {
        "id": schedule_id, "scheduler_id": "boefje", "organisation": org, "hash": key, "data": data,
        "enabled": True, "schedule": None, "deadline_at": deadline, "created_at": now, "modified_at": now,
    }  # fmt: skip


def _finished_task_row(
    task: BoefjeTask, schedule_id: uuid.UUID, key: str, data: dict[str, object], at: datetime
) -> dict[str, object]:
    return {
        "id": task.id, "scheduler_id": "boefje", "schedule_id": schedule_id,
        "organisation": task.organization, "priority": 500, "status": "completed", "type": "boefje",
        "hash": key, "data": data,
        "created_at": at, "modified_at": at,
    }  # fmt: skip


def kat_server(boefje_ids: list[str] = BOEFJES) -> KatFakeServer:
    server = KatFakeServer()
    for o in range(ORGANISATIONS):
        server.add_organisation(Organisation(id=org_id(o)))
        for boefje_id in boefje_ids:
            server.add_plugin(org_id(o), plugin(boefje_id))
        for h in range(HOSTNAMES):
            server.add_object(org_id(o), hostname(h))
    return server


def requests_to(server: KatFakeServer, prefix: str) -> int:
    with server.lock:
        return sum(count for (_method, path), count in server.requests.items() if path.startswith(prefix))


def service_requests(server: KatFakeServer, tasks: int) -> str:
    """Requests per task to each service, e.g. `katalogus 0.030 (300), octopoes 0.200 (2,000), …`."""
    counts = [(name, requests_to(server, prefix)) for name, prefix in SERVICES]
    return ", ".join(f"{name} {count / max(tasks, 1):.3f} ({count:,})" for name, count in counts)


def bench_reschedule(directory: Path) -> None:
    engine = fresh_engine(directory, "reschedule")
    due = seed_due_schedules(engine)
    with kat_server() as server:
        clients = connect(server, SystemClock())
        boefjes = planner(engine, clients.katalogus, clients.octopoes, clients.bytes)
        start = time.perf_counter()
        created = sum(boefjes.reschedule_due(org_id(o)).created for o in range(ORGANISATIONS))
        elapsed = time.perf_counter() - start
        requests = service_requests(server, created)
        katalogus = requests_to(server, KATALOGUS) / max(created, 1)
        clients.close()
    reference = reference_push_seconds(directory) * due
    print(f"rescheduling {due:,} due schedules, {ORGANISATIONS} organisations, services on loopback")
    print(f"  pushed {created:,} tasks in {elapsed:.2f} s ({created / elapsed:,.0f} tasks/s; target <= 10 s)")
    print(f"  requests per task (total): {requests}")
    print(f"  katalogus requests per task: {katalogus:.3f} (target <= 0.1)")
    print(f"  reference, one SqlTaskQueue.push per task: {reference:.2f} s; ratio {elapsed / reference:.2f}")


def bench_mutations(directory: Path) -> None:
    mutations = [new_hostname_mutation(n) for n in range(MUTATIONS)]
    print(f"{MUTATIONS:,} mutations of new hostnames, {len(MUTATION_BOEFJES)} boefjes each, no RabbitMQ")
    reference = 1 / reference_push_seconds(directory)
    for batch in (1, BATCH):
        with kat_server(MUTATION_BOEFJES) as server:
            clients = connect(server, SystemClock())
            engine = fresh_engine(directory, f"mutations-loopback-{batch}")
            boefjes = planner(engine, clients.katalogus, clients.octopoes, clients.bytes)
            rate, created = mutation_rate(boefjes, mutations, batch)
            requests = service_requests(server, created)
            clients.close()
        catalog, objects, raw_data = in_memory_services()
        engine = fresh_engine(directory, f"mutations-memory-{batch}")
        in_memory, _ = mutation_rate(planner(engine, catalog, objects, raw_data), mutations, batch)
        per = "one message at a time" if batch == 1 else f"batches of {batch} messages"
        print(f"  {per}: {rate:,.0f} tasks/s with services on loopback, {in_memory:,.0f} tasks/s in memory")
        print(f"    ({created:,} tasks; target >= 1,000/s; ratio to the reference {rate / reference:.2f} and "
              f"{in_memory / reference:.2f}); requests per task (total): {requests}")  # fmt: skip
    print(f"  reference, one SqlTaskQueue.push per task: {reference:,.0f} tasks/s")


def new_hostname_mutation(n: int) -> ScanProfileMutation:
    ooi = hostname(1_000_000 + n)
    return ScanProfileMutation(
        operation=MutationOperation.CREATE,
        primary_key=ooi.primary_key,
        value=ooi,
        client_id=org_id(n % ORGANISATIONS),
    )


def in_memory_services() -> tuple[InMemoryCatalog, InMemoryObjectGraph, InMemoryRawDataIndex]:
    catalog = InMemoryCatalog()
    for o in range(ORGANISATIONS):
        catalog.add_organisation(Organisation(id=org_id(o)))
        for boefje_id in MUTATION_BOEFJES:
            catalog.add_plugin(org_id(o), plugin(boefje_id))
    return catalog, InMemoryObjectGraph(), InMemoryRawDataIndex()


def mutation_rate(
    boefjes: BoefjePlanner, mutations: list[ScanProfileMutation], batch: int
) -> tuple[float, int]:
    start = time.perf_counter()
    batches = (mutations[first : first + batch] for first in range(0, len(mutations), batch))
    created = sum(boefjes.plan_for_mutations(some).created for some in batches)
    return created / (time.perf_counter() - start), created


_reference: list[float] = []


def reference_push_seconds(directory: Path) -> float:
    """Seconds per `SqlTaskQueue.push` of a boefje task, one transaction each (measured once per run)."""
    if not _reference:
        queue = SqlTaskQueue(fresh_engine(directory, "reference"), SystemClock())
        start = time.perf_counter()
        for i in range(REFERENCE_PUSHES):
            task = BoefjeTask(
                boefje=Boefje(id="boefje-0"), input_ooi=hostname(i).primary_key, organization="org-000"
            )
            queue.push(TaskDraft("boefje", "org-000", 500, task.model_dump(mode="json")))
        _reference.append((time.perf_counter() - start) / REFERENCE_PUSHES)
    return _reference[0]


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="katsched-bench-planners-"))
    bench_reschedule(directory)
    bench_mutations(directory)


if __name__ == "__main__":
    main()
