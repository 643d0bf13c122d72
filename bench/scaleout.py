"""Scale-out benchmark (issue 10): 1, 2 and 3 `katsched daemon` processes on one PostgreSQL database, on this
machine, with the KAT services on loopback (`tests/contract/kat_fake_server.py`) and RabbitMQ.

For each fleet size, a round starts the daemons on a new database (each with its API on its own port) and
measures, one after the other:

1. rescheduling: due schedules planned per second. The schedules (organisations x hostnames, one boefje, each
   last run two days ago) are seeded before the daemons start and made due at once when all are up; the time
   runs from then until every schedule has its task and no claim is left (`tests/integration/fleet.py`).
2. pops: HTTP pops per second, 16 client processes spread over the daemons' APIs (client i on daemon i mod N),
   each popping one task at a time from the tasks just planned (`bench/api.py`'s client).
3. mutations: scan-profile mutations per second through RabbitMQ, every daemon consuming the one queue: from
   the first publish until every expected task is queued.

Each figure is the median of 3 rounds, printed with the load average and as a ratio to the 1-daemon figure of
the same run (the scaling factor). On a 2-core machine flat is acceptable, falling is not.

    uvx nox -s bench -- bench/scaleout.py      (or: python bench/scaleout.py [--quick])
"""

import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for the fleet helpers under tests/

from api import run as http_clients  # bench/api.py
from intake import broker, go, mutations, publisher  # bench/intake.py

from katsched.store.engine import build_engine
from katsched.store.migrate import upgrade
from katsched.store.tables import tasks
from tests.conftest import scratch_postgres
from tests.contract.kat_fake_server import KatFakeServer
from tests.integration.fleet import daemon_config, kat_world, make_due, planned, seed_schedules
from tests.integration.test_daemon_lifecycle import DaemonProcess, free_port

QUICK = "--quick" in sys.argv
ROUNDS = 3
FLEETS = (1, 2, 3)
ORGANISATIONS = 10  # as bench/intake.py's mutations spread over
HOSTNAMES = 200 if QUICK else 1000  # per organisation
POP_CLIENTS = 16
POPS_PER_CLIENT = 50 if QUICK else 200
MUTATIONS = 1000 if QUICK else 4000
STARTUP = 180.0
TIMEOUT = 600.0
AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"

Figures = dict[str, float]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/scaleout.py: timed out waiting until {what}")
        time.sleep(0.05)


def open_tasks(engine: Engine) -> int:
    """Tasks other than the seeded completed ones."""
    with engine.connect() as connection:
        statement = select(func.count()).select_from(tasks).where(tasks.c.status != "completed")
        return int(connection.execute(statement).scalar_one())


class Fleet:
    """`count` daemons on one new database, consuming the mutations of their own queue."""

    def __init__(self, count: int, kat: KatFakeServer, directory: Path, url: str) -> None:
        self.queue = f"katsched_scaleout_{uuid.uuid4().hex[:8]}"
        amqp = f'url = "{AMQP}"\nmutations_queue = "{self.queue}"\nraw_files_queue = "{self.queue}.raw"\n'
        self.ports = [free_port() for _ in range(count)]
        self.daemons = []
        for n, port in enumerate(self.ports):
            home = directory / f"d{n}"
            home.mkdir()
            config = daemon_config(home / "config.toml", url, kat, api_port=port, amqp=amqp)
            self.daemons.append(DaemonProcess(config, home))
        for daemon in self.daemons:
            daemon.wait_for("daemon_ready", timeout=STARTUP)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        queues = (self.queue, f"{self.queue}.dead", f"{self.queue}.raw", f"{self.queue}.raw.dead")
        broker(lambda channel: [channel.queue_delete(queue=name) for name in queues])


def one_round(count: int, kat: KatFakeServer) -> Figures:
    with scratch_postgres("katsched_bench_scaleout") as url:
        engine = build_engine(url)
        upgrade(engine)
        due = seed_schedules(engine, ORGANISATIONS, HOSTNAMES)
        directory = Path(tempfile.mkdtemp(prefix=f"katsched-bench-scaleout-{count}-"))
        fleet = Fleet(count, kat, directory, url)
        try:
            return {
                "rescheduling /s": reschedule(engine, due),
                "pops /s": pops(fleet),
                "mutations /s": consume(engine, fleet, directory),
            }
        finally:
            fleet.stop()
            engine.dispose()


def reschedule(engine: Engine, due: int) -> float:
    start = time.perf_counter()
    make_due(engine)
    wait(lambda: planned(engine) == (due, 0), f"{due} schedules are planned")
    return due / (time.perf_counter() - start)


def pops(fleet: Fleet) -> float:
    rate, _latencies = http_clients(fleet.urls, "pop", POP_CLIENTS, POPS_PER_CLIENT)
    return rate


def consume(engine: Engine, fleet: Fleet, directory: Path) -> float:
    before = open_tasks(engine)
    child = publisher(fleet.queue, mutations(MUTATIONS, fleet.queue), directory)
    start = time.perf_counter()
    go(child)
    wait(lambda: open_tasks(engine) >= before + MUTATIONS, f"{MUTATIONS} mutations are planned")
    elapsed = time.perf_counter() - start
    child.wait()
    return MUTATIONS / elapsed


def main() -> None:
    due = ORGANISATIONS * HOSTNAMES
    print(f"bench/scaleout.py: 1-3 daemons on one PostgreSQL database, {os.cpu_count()} CPUs; {due:,} due "
          f"schedules over {ORGANISATIONS} organisations, {POP_CLIENTS} pop clients x {POPS_PER_CLIENT}, "
          f"{MUTATIONS:,} mutations; medians of {ROUNDS}")  # fmt: skip
    print(f"load average before the run: {load()}")
    results: dict[int, Figures] = {}
    with kat_world(ORGANISATIONS, HOSTNAMES) as kat:
        rounds: dict[int, list[Figures]] = {count: [] for count in FLEETS}
        for number in range(ROUNDS):  # the fleet sizes alternate, so a busy minute does not hit one alone
            for count in FLEETS:
                figures = one_round(count, kat)
                rounds[count].append(figures)
                shown = "  ".join(f"{name} {value:,.0f}" for name, value in figures.items())
                print(f"  round {number + 1}, {count} daemon(s): {shown}   load {load()}", flush=True)
        for count in FLEETS:
            results[count] = {
                name: statistics.median(r[name] for r in rounds[count]) for name in rounds[count][0]
            }
    print(f"\n{'daemons':<8} " + "  ".join(f"{name:>26}" for name in results[1]))
    for count in FLEETS:
        cells = [
            f"{value:>14,.0f} (x{value / results[1][name]:.2f})".rjust(26)
            for name, value in results[count].items()
        ]
        print(f"{count:<8} " + "  ".join(cells))
    print(f"load average after the run: {load()}")


if __name__ == "__main__":
    main()
