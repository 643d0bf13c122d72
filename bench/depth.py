"""Depth benchmark: the daemon and the CLI with 1k, 100k and 1M tasks queued on SQLite.

Each database is filled once by direct inserts through the store's own table definition (so its column types
and triggers), then copied for every run. 10 organisations; one queued task in ten has a completed run of
the same work in the history, 1-14 days old, and is ranked by staleness as the planner would; the others
have never run. Per size, medians of 3:

- the idle daemon's CPU (share of one core over a window that holds one run of every organisation job, with
  the jobs every 30 s: twice the default rate) and its RSS after start;
- `GET /tasks/stats` and `GET /tasks?limit=10` p50, then RSS after 100 list/stats/pop requests;
- pop (limit=1) p99 over HTTP;
- `katsched queue stats` and `katsched status --once` wall and CPU time, beside `python -c pass` measured
  alongside, and the reads of those commands timed in-process (the part that is not the CLI's start-up).

    python bench/depth.py [--sizes 1000,100000,1000000] [--cache DIR]
"""

import argparse
import math
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select, update

from katsched.cli.dashboard import blocked_last_hour
from katsched.core.hashing import task_hash
from katsched.core.models import Boefje, BoefjeTask
from katsched.core.ranking import RERANK_SPACING, RankFacts, rerank_due_at, staleness
from katsched.store import counts, tables
from katsched.store.engine import build_engine, read, write
from katsched.store.migrate import upgrade
from katsched.store.overview import take_overview

ORGANISATIONS = [f"org{i}" for i in range(10)]
JOB_INTERVAL = 30
CHUNK = 20_000
ROUNDS = 3
# Raised whenever the filled rows change (3: ranks last rewritten within the past RERANK_SPACING), so that a
# cached database of an older format is never measured.
FILL_FORMAT = 3


def boefje_task(i: int, organisation: str) -> BoefjeTask:
    boefje = Boefje(id="dns-records", name="DNS records", version="1", oci_image="ghcr.io/kat/dns:1")
    return BoefjeTask(boefje=boefje, input_ooi=f"Hostname|internet|h{i}.example", organization=organisation)


def rank_columns(last_run_at: datetime | None, ranked_at: datetime) -> dict[str, Any]:
    """The re-ranking columns of the store under test, when it has them (the planner fills them in)."""
    if "rerank_at" not in tables.tasks.c:
        return {}
    facts = RankFacts(last_run_at=last_run_at)
    return {"last_run_at": last_run_at, "rerank_at": rerank_due_at("staleness", facts, ranked_at)}


def rows(count: int, now: datetime, seed: int = 15) -> Iterator[dict[str, Any]]:
    randomness = random.Random(seed)
    start = now - timedelta(days=14)
    step = timedelta(days=14) / max(count, 1)
    for i in range(count):
        organisation = ORGANISATIONS[i % len(ORGANISATIONS)]
        task = boefje_task(i, organisation)
        data = task.model_dump(mode="json")
        created_at = start + step * i
        common = {"scheduler_id": "boefje", "organisation": organisation, "type": "boefje"}
        common["hash"] = task_hash(task)
        last_run_at = None
        if i % 10 == 0:
            last_run_at = now - timedelta(seconds=randomness.uniform(86_400, 14 * 86_400))
            previous = uuid.uuid4()
            yield {**common, "id": previous, "priority": 2, "status": "completed",
                   "data": {**data, "id": str(previous)},
                   "created_at": last_run_at, "modified_at": last_run_at}  # fmt: skip
        task_id = uuid.uuid4()
        # As a running daemon leaves them: each rank written at some moment of the last RERANK_SPACING, so
        # that re-ranking comes due evenly over time (not all at once an hour after the fill).
        ranked_at = now - RERANK_SPACING * randomness.random()
        priority = staleness(RankFacts(last_run_at=last_run_at), ranked_at)
        yield {**common, "id": task_id, "priority": priority, "status": "queued",
               "data": {**data, "id": str(task_id)}, "created_at": created_at, "modified_at": created_at,
               **rank_columns(last_run_at, ranked_at)}  # fmt: skip


def fill(path: Path, count: int) -> None:
    engine = build_engine(f"sqlite:///{path}")
    upgrade(engine)
    batch: list[dict[str, Any]] = []
    for row in rows(count, datetime.now(UTC)):
        batch.append(row)
        if len(batch) >= CHUNK:
            _insert(engine, batch)
            batch = []
    _insert(engine, batch)
    engine.dispose()


def _insert(engine: Any, batch: list[dict[str, Any]]) -> None:
    if not batch:
        return
    for keys in {tuple(sorted(row)) for row in batch}:  # executemany needs one set of keys per call
        with write(engine) as connection:
            connection.execute(insert(tables.tasks), [row for row in batch if tuple(sorted(row)) == keys])


def filled(cache: Path, count: int) -> Path:
    revision = "rank" if "rerank_at" in tables.tasks.c else "base"
    path = cache / f"depth-{revision}-v{FILL_FORMAT}-{count}.db"
    if not path.exists():
        began = time.monotonic()
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        fill(partial, count)
        partial.rename(path)
        print(f"  filled {count:,} queued in {time.monotonic() - began:.0f} s", flush=True)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(directory: Path, database: Path, port: int) -> Path:
    organisations = "".join(f'[[catalogue.organisations]]\nid = "{o}"\nname = "{o}"\n' for o in ORGANISATIONS)
    config = directory / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{database}"\n[api]\nport = {port}\n[logging]\nlevel = "WARNING"\n'
        f"[recurring]\ninterval = {JOB_INTERVAL}\njitter = 0\n{organisations}"
    )
    return config


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


FAILED: list[str] = []


def timed(call: Callable[[], Any]) -> float:
    """The call's duration; a call that fails is counted (and printed at the end), not fatal."""
    began = time.perf_counter()
    try:
        call()
    except (httpx.HTTPError, subprocess.CalledProcessError) as exc:
        FAILED.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    return time.perf_counter() - began


def daemon_round(config: Path, port: int) -> dict[str, float]:
    log = (config.parent / "daemon.log").open("w")  # kept with the run's files, for a failed request
    daemon = subprocess.Popen(
        [sys.executable, "-m", "katsched", "daemon", "--config", str(config)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            _wait_up(client, daemon)
            time.sleep(5)  # the jobs that run at start
            figures = {"rss_start_mb": rss_mb(daemon.pid)}
            before = cpu_seconds(daemon.pid)
            time.sleep(JOB_INTERVAL + 1)
            figures["idle_cpu_pct"] = 100 * (cpu_seconds(daemon.pid) - before) / (JOB_INTERVAL + 1)
            figures |= _requests(client)
            figures["rss_after_mb"] = rss_mb(daemon.pid)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            FAILED.append("the daemon did not stop within 60 s of SIGTERM")
            daemon.kill()
            daemon.wait()
    return figures


def _wait_up(client: httpx.Client, daemon: subprocess.Popen[bytes]) -> None:
    for _ in range(1200):  # bounded: 120 s
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if daemon.poll() is not None:
            raise SystemExit(f"bench/depth.py: the daemon exited with {daemon.returncode}")
        time.sleep(0.1)
    raise SystemExit("bench/depth.py: the daemon did not answer /health")


def _requests(client: httpx.Client) -> dict[str, float]:
    """34 stats, 33 list and 33 pop requests, then 200 pops for the pop p99."""
    stats, listing, pops = [], [], []
    for _ in range(33):
        stats.append(timed(lambda: client.get("/tasks/stats").raise_for_status()))
        listing.append(timed(lambda: client.get("/tasks", params={"limit": 10}).raise_for_status()))
        pops.append(timed(lambda: client.post("/schedulers/boefje/pop?limit=1").raise_for_status()))
    stats.append(timed(lambda: client.get("/tasks/stats").raise_for_status()))
    for _ in range(200):
        pops.append(timed(lambda: client.post("/schedulers/boefje/pop?limit=1").raise_for_status()))
    return {
        "stats_p50_ms": 1000 * statistics.median(stats),
        "list_p50_ms": 1000 * statistics.median(listing),
        "pop_p99_ms": 1000 * statistics.quantiles(pops, n=100)[98],
    }


def cli_round(config: Path, database: Path) -> dict[str, float]:
    """Each command's wall time and its own CPU time (user + system: what load on a shared machine does not
    inflate), and the status command's reads timed in this process (the part that is not start-up)."""
    figures: dict[str, float] = {}

    def run(name: str, *args: str, accepted: tuple[int, ...] = (0,)) -> None:
        command = [sys.executable, *args]

        def call() -> None:
            done = subprocess.run(command, capture_output=True, timeout=300)
            if done.returncode not in accepted:
                raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr)

        before = _children_cpu()
        figures[f"{name}_s"] = timed(call)
        figures[f"{name}_cpu_s"] = _children_cpu() - before

    katsched = ("-m", "katsched")
    run("python_pass", "-c", "pass")
    run("queue_stats", *katsched, "queue", "stats", "--config", str(config))
    # Exit status 1: no daemon's heartbeat (none runs yet); the whole dashboard is printed all the same.
    run("status_once", *katsched, "status", "--once", "--config", str(config), accepted=(0, 1))
    figures["status_reads_ms"] = 1000 * timed(lambda: _status_reads(database))
    return figures


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _status_reads(database: Path) -> None:
    """What `queue stats` and `status --once` read, without the CLI's start-up (imports included)."""
    engine = build_engine(f"sqlite:///{database}", pool_size=1, read_only=True)
    now = datetime.now(UTC)
    with read(engine) as connection:
        counts.counted(connection)
    take_overview(engine, now, overdue_after=timedelta(hours=1))
    blocked_last_hour(engine, now)
    engine.dispose()


def brought_forward(database: Path) -> None:
    """Move every rank's rewrite moment forward by the age of the filled copy, so that re-ranking comes due as
    evenly as it did right after the fill: a cached database otherwise gathers a backlog of due ranks while it
    waits on disk (all of them after RERANK_SPACING), and the idle daemon would be measured working it off."""
    if "rerank_at" not in tables.tasks.c:
        return
    engine = build_engine(f"sqlite:///{database}")
    with write(engine) as connection:
        earliest = connection.execute(select(func.min(tables.tasks.c.rerank_at))).scalar_one()
        if earliest is not None:  # the fill wrote each rank within RERANK_SPACING before its start: the
            # first comes due at the fill's start
            filled_at = datetime.fromisoformat(str(earliest)).replace(tzinfo=UTC)
            age = math.floor((datetime.now(UTC) - filled_at).total_seconds())
            # The stored text form ("YYYY-MM-DD HH:MM:SS.ffffff") kept, so that it still sorts as time.
            moved = func.strftime("%Y-%m-%d %H:%M:%f", tables.tasks.c.rerank_at, f"+{age} seconds") + "000"
            rerank_at = tables.tasks.c.rerank_at
            connection.execute(update(tables.tasks).where(rerank_at.is_not(None)).values(rerank_at=moved))
    engine.dispose()


def measure(source: Path) -> dict[str, float]:
    results: dict[str, list[float]] = {}
    for number in range(ROUNDS):
        with tempfile.TemporaryDirectory(prefix="katsched-depth-") as directory:
            database = Path(directory) / "depth.db"
            shutil.copyfile(source, database)
            brought_forward(database)
            port = free_port()
            config = write_config(Path(directory), database, port)
            failed = len(FAILED)
            figures = cli_round(config, database) | daemon_round(config, port)
            print("  round " + " ".join(f"{name}={value:.2f}" for name, value in figures.items()), flush=True)
            for name, value in figures.items():
                results.setdefault(name, []).append(value)
            if len(FAILED) > failed:  # keep the daemon's log beside the filled database
                shutil.copyfile(config.parent / "daemon.log", source.with_suffix(f".round{number}.log"))
    return {name: statistics.median(values) for name, values in results.items()}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "katsched-depth")
    arguments = parser.parse_args()
    arguments.cache.mkdir(parents=True, exist_ok=True)
    print(f"bench/depth.py: medians of {ROUNDS}; {os.cpu_count()} CPUs; jobs every {JOB_INTERVAL} s")
    measured: dict[int, dict[str, float]] = {}
    for count in (int(size) for size in arguments.sizes.split(",")):
        print(f"{count:,} queued (load average {load()})", flush=True)
        measured[count] = figures = measure(filled(arguments.cache, count))
        for name, value in figures.items():
            print(f"  {name:<20} {value:10.2f}")
        print(f"  load average after: {load()}", flush=True)
    if FAILED:
        print(f"{len(FAILED)} requests or commands failed; first: {FAILED[0]}")
    if len(measured) > 1:
        smallest, largest = min(measured), max(measured)
        print(f"each figure at {largest:,} queued as a ratio to the same figure at {smallest:,} (this run):")
        for name, value in measured[largest].items():
            reference = measured[smallest][name]
            print(f"  {name:<20} {value / reference if reference else float('nan'):8.2f}x")


if __name__ == "__main__":
    main()
