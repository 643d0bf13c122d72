"""Intake benchmark: scan-profile mutations through RabbitMQ → consumer → boefje planner → SQLite queue.

5,000 mutations of new hostnames over 10 organisations, each taken by 3 enabled boefjes (15,000 tasks).
Katalogus, Octopoes and Bytes are the loopback fake server (`tests/contract/kat_fake_server.py`) in a process
of its own, as the real services are, reached through the real HTTP clients with the Katalogus cache on (as
configured by default) and warmed before the clock starts; `--bytes-latency MS` delays each Bytes lookup, as
a real Bytes and its database would, and `--kat-latency MS` (10 for issue 15's target) every request to each
of the three services. `--services memory` uses the in-memory ports.
Measured until the consumer has acknowledged every message, which it does only after the tasks are committed:

- backlog: the mutations wait in the queue, then the consumer starts;
- stream: the consumer is running; another process publishes the mutations, as Octopoes does.

Two ways to hand messages to the planner: one `plan_for_mutation` call per message, and `Batch`es of the
messages already waiting (up to 100) planned together by `plan_for_mutations`, as the daemon does. Workers,
prefetch and batch size default to the daemon's. A new object has no history: one Bytes request per message.

Each round's line gives messages/s (one mutation each) and tasks/s (the tasks those messages queued); then the
median of the rounds, whose runs alternate with the planner's alone. Targets (issue 15), in tasks/s: >= 2,000
without injected latency and >= 1,000 with every KAT request 10 ms late (`--kat-latency 10`); Katalogus
<= 0.01 and Bytes <= 1 request per message. References, same run: the planner called directly, without
RabbitMQ (one call per mutation, and batches of the same size), and the intake alone, with a handler that does
nothing. Needs RabbitMQ on 127.0.0.1:5672.

    uvx nox -s bench -- bench/intake.py   (or: python bench/intake.py [--quick] [--modes batch] [--rounds 3]
                                          [--services memory] [--kat-latency 10])
"""

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for the loopback fake under tests/

from katsched.clock import SystemClock
from katsched.config import AmqpSettings
from katsched.core.models import Organisation, Plugin
from katsched.intake import (
    BATCH_SIZE,
    QueueConsumer,
    decode_mutation,
    mutation_batches,
    mutation_handler,
    sample_mutation,
)
from katsched.schedulers.boefje import BoefjePlanner
from katsched.store.decisions import SqlDecisionLog
from katsched.store.engine import build_engine
from katsched.store.lookups import SqlTaskStore
from katsched.store.migrate import upgrade
from katsched.store.plugins_seen import SqlSeenPlugins
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.testing import InMemoryCatalog, InMemoryObjectGraph, InMemoryRawDataIndex
from tests.contract.kat_fake_server import KatClients, connect

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
ORGANISATIONS = [f"org-{n:02d}" for n in range(10)]
BOEFJES = ["dns-records", "nmap", "whois"]
TIMEOUT = 300.0
# Issue 15's targets: tasks/s without injected latency, and with every KAT request 10 ms late.
TARGET_TASKS_PER_SECOND = {0.0: 2000, 10.0: 1000}
MOST_REQUESTS_PER_MESSAGE = {"katalogus": 0.01, "bytes": 1.0}


def consumer_default(name: str) -> int:
    default = inspect.signature(QueueConsumer).parameters[name].default
    assert isinstance(default, int)
    return default


def plugin(boefje_id: str) -> Plugin:
    return Plugin(id=boefje_id, type="boefje", enabled=True, scan_level=1, consumes=["Hostname"], produces=[])


def serve_kat(bytes_latency: float, kat_latency: float) -> None:
    """Child role: the loopback KAT services; prints their URLs, then request counts per line read."""
    from tests.contract.kat_fake_server import BYTES, KATALOGUS, OCTOPOES, KatFakeServer

    server = KatFakeServer()
    for organisation in ORGANISATIONS:
        server.add_organisation(Organisation(id=organisation))
        for boefje_id in BOEFJES:
            server.add_plugin(organisation, plugin(boefje_id))
    if bytes_latency:  # every run lookup waits, as on a real Bytes and its database
        server.delay_next(10**9, bytes_latency, f"{BYTES}/bytes/")
    if kat_latency:  # every request to every service waits, as over a network to busy services
        server.delay_next(10**9, kat_latency)
    names = ("katalogus_url", "octopoes_url", "bytes_url", "username", "password")
    print(json.dumps({name: getattr(server, name) for name in names}), flush=True)
    prefixes = {"katalogus": KATALOGUS, "octopoes": OCTOPOES, "bytes": BYTES}
    for _ in sys.stdin:
        with server.lock:
            hits = server.requests.items()
            counts = {
                name: sum(n for (_, path), n in hits if path.startswith(p)) for name, p in prefixes.items()
            }
        print(json.dumps(counts), flush=True)


def publish_file(queue: str, path: str) -> None:
    """Child role: publishes each line of the file, persistent, as Octopoes does."""
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    persistent = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
    bodies = Path(path).read_bytes().split(b"\n")
    print("ready", flush=True)
    sys.stdin.readline()
    for body in bodies:
        channel.basic_publish(exchange="", routing_key=queue, body=body, properties=persistent)
    connection.close()


@dataclass
class Services:
    clients: KatClients
    counts: Callable[[], dict[str, int]]
    close: Callable[[], None]


def loopback_services(bytes_latency_ms: float, kat_latency_ms: float) -> Services:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-kat", "--bytes-latency", str(bytes_latency_ms),
         "--kat-latency", str(kat_latency_ms)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    remote = argparse.Namespace(**json.loads(child.stdout.readline()))
    clients = connect(remote, SystemClock())

    def counts() -> dict[str, int]:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("counts\n")
        child.stdin.flush()
        return dict(json.loads(child.stdout.readline()))

    def close() -> None:
        clients.close()
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)

    return Services(clients, counts, close)


def memory_services() -> Services:
    catalog = InMemoryCatalog()
    for organisation in ORGANISATIONS:
        catalog.add_organisation(Organisation(id=organisation))
        for boefje_id in BOEFJES:
            catalog.add_plugin(
                organisation,
                Plugin(
                    id=boefje_id,
                    type="boefje",
                    enabled=True,
                    scan_level=1,
                    consumes=["Hostname"],
                    produces=[],
                ),
            )
    clients = KatClients(katalogus=catalog, octopoes=InMemoryObjectGraph(), bytes=InMemoryRawDataIndex())  # type: ignore[arg-type]
    return Services(clients, lambda: {"katalogus": 0, "octopoes": 0, "bytes": 0}, lambda: None)


def mutations(count: int, run: str) -> list[bytes]:
    return [
        sample_mutation(ORGANISATIONS[n % len(ORGANISATIONS)], f"Hostname|internet|{run}-{n}.example", 2)
        for n in range(count)
    ]


def planner(directory: Path, name: str, clients: KatClients) -> tuple[BoefjePlanner, SqlTaskQueue]:
    clock = SystemClock()
    engine = build_engine(f"sqlite:///{directory / name}.db")
    upgrade(engine)
    queue = SqlTaskQueue(engine, clock)
    boefjes = BoefjePlanner(
        tasks=SqlTaskStore(queue), schedules=SqlScheduleStore(engine, clock), seen=SqlSeenPlugins(engine),
        catalog=clients.katalogus, objects=clients.octopoes, raw_data=clients.bytes, clock=clock,
        decisions=SqlDecisionLog(engine),  # as the daemon builds it: each decision is kept
    )  # fmt: skip
    for body in mutations(len(ORGANISATIONS), f"warm-{name}"):  # fills the Katalogus cache of each org
        boefjes.plan_for_mutation(decode_mutation(body))
    return boefjes, queue


def broker(action: Callable[[Any], object]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    action(connection.channel())
    connection.close()


def publisher(queue: str, bodies: list[bytes], directory: Path) -> subprocess.Popen[str]:
    """Another process, as Octopoes is, connected and waiting: it publishes once told to (`go`)."""
    path = directory / f"{queue}.bodies"
    path.write_bytes(b"\n".join(bodies))
    child = subprocess.Popen(
        [sys.executable, __file__, "--publish", queue, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return child


def go(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.close()


def wait_for_acks(consumer: QueueConsumer, count: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while consumer.stats.acked < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {consumer.stats}")
        time.sleep(0.005)


def through_rabbitmq(consumer: QueueConsumer, kind: str, bodies: list[bytes], directory: Path) -> float:
    """Seconds from the start (consumer start for a backlog, first publish for a stream) to the last ack."""
    child = publisher(consumer.queue, bodies, directory)
    if kind == "backlog":
        go(child)
        child.wait()
        start = time.perf_counter()
        consumer.start()
    else:
        consumer.start()
        while not consumer.connected:
            time.sleep(0.01)
        start = time.perf_counter()
        go(child)
    wait_for_acks(consumer, len(bodies))
    elapsed = time.perf_counter() - start
    child.wait()
    return elapsed


def measure(
    mode: str, kind: str, count: int, services: Services, args: argparse.Namespace, directory: Path
) -> tuple[float, str]:
    """Tasks/s of one run, and the line that describes it."""
    run = f"{mode}-{kind}-{uuid.uuid4().hex[:6]}"
    boefjes, queue = planner(directory, run, services.clients)
    work = mutation_batches(boefjes, args.batch) if mode == "batch" else mutation_handler(boefjes)
    name = f"katsched_bench_{uuid.uuid4().hex[:8]}"
    broker(lambda channel: channel.queue_declare(queue=name, durable=True))
    consumer = QueueConsumer(URL, name, work, prefetch=args.prefetch, workers=args.workers)
    before = services.counts()
    try:
        elapsed = through_rabbitmq(consumer, kind, mutations(count, run), directory)
    finally:
        consumer.stop(timeout=10)
        broker(lambda channel: [channel.queue_delete(queue=q) for q in (name, f"{name}.dead")])
    after = services.counts()
    per_message = ", ".join(requests_per_message(key, (after[key] - before[key]) / count) for key in after)
    tasks = queue.qsize("boefje") - len(ORGANISATIONS) * len(BOEFJES)  # minus the warm-up's
    line = (f"{count / elapsed:>7,.0f} messages/s {tasks / elapsed:>7,.0f} tasks/s {elapsed:6.2f} s  "
            f"{tasks:,} tasks   requests per message: {per_message}")  # fmt: skip
    return tasks / elapsed, line


def verdict(tasks_per_second: float, kat_latency: float) -> str:
    """'met' or 'MISS' against the target for this latency; blank where the issue sets none."""
    target = TARGET_TASKS_PER_SECOND.get(kat_latency)
    if target is None:
        return ""
    return "met" if tasks_per_second >= target else "MISS"


def requests_per_message(service: str, per_message: float) -> str:
    most = MOST_REQUESTS_PER_MESSAGE.get(service)
    if most is None:
        return f"{service} {per_message:.3f}"
    return f"{service} {per_message:.3f} ({'met' if per_message <= most else 'MISS'} <= {most:g})"


def intake_alone(count: int, args: argparse.Namespace, directory: Path) -> float:
    """The consumer with a handler that does nothing: the ceiling of the intake itself on this machine."""
    name = f"katsched_bench_{uuid.uuid4().hex[:8]}"
    broker(lambda channel: channel.queue_declare(queue=name, durable=True))
    consumer = QueueConsumer(URL, name, lambda _body: None, prefetch=args.prefetch, workers=args.workers)
    try:
        return count / through_rabbitmq(consumer, "backlog", mutations(count, "noop"), directory)
    finally:
        consumer.stop(timeout=10)
        broker(lambda channel: [channel.queue_delete(queue=q) for q in (name, f"{name}.dead")])


def rounds(
    mode: str, count: int, services: Services, args: argparse.Namespace, directory: Path
) -> dict[str, float]:
    """Median tasks/s of the planner alone and of the intake (backlog, stream), their runs alternated."""
    runs: dict[str, list[float]] = {"alone": [], "backlog": [], "stream": []}
    batch = args.batch if mode == "batch" else 1
    for number in range(1, args.rounds + 1):
        runs["alone"].append(len(BOEFJES) * reference(mode, count, batch, services, directory))
        print(f"  round {number} {mode:<7} the planner alone {runs['alone'][-1]:>7,.0f} tasks/s", flush=True)
        for kind in ("backlog", "stream"):
            rate, line = measure(mode, kind, count, services, args, directory)
            runs[kind].append(rate)
            print(f"  round {number} {mode:<7} {kind:<8} {line}", flush=True)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    for kind in ("backlog", "stream"):
        rate, each = medians[kind], ", ".join(f"{r:,.0f}" for r in runs[kind])
        print(f"  {mode:<7} {kind:<8} median {rate:>7,.0f} tasks/s {verdict(rate, args.kat_latency):<5} "
              f"(runs {each}); the planner alone {medians['alone']:,.0f} tasks/s, "
              f"ratio {rate / medians['alone']:.2f}", flush=True)  # fmt: skip
    return medians


def reference(mode: str, count: int, batch: int, services: Services, directory: Path) -> float:
    """Mutations/s of the planner called directly."""
    run = f"reference-{mode}-{uuid.uuid4().hex[:6]}"
    boefjes, _ = planner(directory, run, services.clients)
    decoded = [decode_mutation(body) for body in mutations(count, run)]
    start = time.perf_counter()
    if mode == "batch":
        for first in range(0, count, batch):
            boefjes.plan_for_mutations(decoded[first : first + batch])
    else:
        for mutation in decoded:
            boefjes.plan_for_mutation(mutation)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1,000 mutations instead of 5,000")
    parser.add_argument("--services", choices=["loopback", "memory"], default="loopback")
    # The daemon's defaults: `[amqp] prefetch`, the consumer's workers, the mutation batch size.
    parser.add_argument("--workers", type=int, default=consumer_default("workers"))
    parser.add_argument("--prefetch", type=int, default=AmqpSettings().prefetch)
    parser.add_argument("--batch", type=int, default=BATCH_SIZE, help="most messages planned together")
    parser.add_argument(
        "--bytes-latency", type=float, default=0.0, metavar="MS", help="delay of each loopback Bytes lookup"
    )
    parser.add_argument(
        "--kat-latency",
        type=float,
        default=0.0,
        metavar="MS",
        help="delay of every loopback KAT request (10)",
    )
    parser.add_argument("--modes", default="message,batch", help="message, batch (the daemon's), or both")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each figure is their median")
    parser.add_argument("--serve-kat", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--publish", nargs=2, metavar=("QUEUE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_kat:
        return serve_kat(args.bytes_latency / 1000, args.kat_latency / 1000)
    if args.publish:
        return publish_file(*args.publish)
    count = 1000 if args.quick else 5000
    directory = Path(tempfile.mkdtemp(prefix="katsched-bench-intake-"))
    latency = f" (Bytes +{args.bytes_latency:g} ms)" if args.bytes_latency else ""
    latency += f" (every KAT request +{args.kat_latency:g} ms)" if args.kat_latency else ""
    target = TARGET_TASKS_PER_SECOND.get(args.kat_latency)
    aim = f"target >= {target:,} tasks/s" if target is not None else "no target at this latency"
    print(f"intake: {count:,} mutations x {len(BOEFJES)} boefjes, {len(ORGANISATIONS)} organisations, "
          f"{args.services} KAT services{latency}, workers={args.workers} prefetch={args.prefetch} "
          f"batch={args.batch}; {aim}; medians of {args.rounds}")  # fmt: skip
    print(f"  load average before the run: {load()}", flush=True)
    services = (
        loopback_services(args.bytes_latency, args.kat_latency)
        if args.services == "loopback"
        else memory_services()
    )
    try:
        modes = args.modes.split(",")
        rates = {mode: rounds(mode, count, services, args, directory) for mode in modes}
        ceiling = intake_alone(count, args, directory)
    finally:
        services.close()
    for mode in modes:
        alone = rates[mode]["alone"] / len(BOEFJES)
        print(f"  reference, the planner alone without RabbitMQ, {mode} mode: {alone:,.0f} mutations/s "
              f"({rates[mode]['alone']:,.0f} tasks/s)")  # fmt: skip
    print(f"  reference, the intake alone (a handler that does nothing): {ceiling:,.0f} messages/s")
    print(f"  load average after the run: {load()}")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
