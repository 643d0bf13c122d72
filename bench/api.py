"""API benchmark: push and pop over HTTP against a real uvicorn on loopback, sequentially and with 1/4/16
concurrent clients, on katsched's SQLite default.

The server is `katsched api` in its own process; each client is a process of its own (as each runner is)
with one keep-alive connection, so no client waits for another's GIL. Pushes look like Rocky's manual scans;
pops like a boefje worker's (`limit=1`, optionally with the worker's filter body).

    uvx nox -s bench -- bench/api.py            (or: python bench/api.py [--quick])

Reference, measured in the same run: bench/bare_app.py, a bare ASGI app on the same uvicorn doing the same
push and pop with raw sqlite3 on a database of katsched's schema; the rounds alternate between the two and
the medians of 3 are printed with the ratios, and the server's CPU per operation read from /proc.
Issue 15's targets: CPU per push and per pop <= 2x the reference's, sequential throughput >= 0.7x, p99 at 16
clients <= 1.5x. (`pop_filtered`, a pop with the boefje worker's filter body, is in CALLS for ad-hoc runs.)

The original scheduler (mula on PostgreSQL) measured on this kind of machine (2 cores):
about 63 pushes/s and 107 pops/s sequentially (p99 24 ms / 14 ms), and p99 about 290 ms at 16 clients.
Targets: >= 700 pushes/s and >= 1,000 pops/s sequentially with p99 < 10 ms; p99 < 60 ms at 16 clients.
"""

import http.client
import itertools
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from katsched.store.engine import build_engine
from katsched.store.migrate import upgrade

QUICK = "--quick" in sys.argv
# `--before PYTHON`: also measure the katsched that PYTHON imports (another tree's venv), in the same rounds.
BEFORE = sys.argv[sys.argv.index("--before") + 1] if "--before" in sys.argv else None
SEQUENTIAL = 600 if QUICK else 3000
ROUNDS = 3
PER_CLIENT = 150 if QUICK else 600
CLIENTS = (1, 4, 16)
WORKER_FILTER = {
    "filters": [
        {"column": "data", "field": "boefje__oci_image", "operator": "in", "value": ["ghcr.io/kat/dns:1"]},
        {"column": "data", "field": "boefje__id", "operator": "in", "value": ["dns-records"]},
    ]
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(server: subprocess.Popen[bytes], url: str) -> None:
    for _ in range(300):  # bounded wait for the server to answer /health (30 s at most)
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("bench/api.py: a server did not start")


def start_server(directory: Path, python: str = sys.executable) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = directory / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{directory / "bench.db"}"\n[logging]\nlevel = "WARNING"\n'
    )
    command = [python, "-m", "katsched", "api", "--config", str(config), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=directory)
    url = f"http://127.0.0.1:{port}"
    wait_for(server, url)
    return server, url


def start_reference(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The bare ASGI app with raw sqlite3 (bench/bare_app.py) on a database of katsched's own schema."""
    path = directory / "reference.db"
    engine = build_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    port = free_port()
    command = [sys.executable, str(Path(__file__).with_name("bare_app.py")), str(path), str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for(server, url)
    return server, url


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Client:
    """A keep-alive HTTP/1.1 connection of the standard library: it costs the client about 0.1 ms a request
    where httpx (which the runners use) costs 0.4-0.6 ms, so the numbers below are mostly the server's."""

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        self.connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=30)

    def post(self, path: str, body: object | None = None) -> tuple[int, Any]:
        payload = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.connection.request("POST", path, body=payload, headers=headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def close(self) -> None:
        self.connection.close()


Call = Callable[[Client, str], tuple[int, Any]]


def push(client: Client, name: str) -> tuple[int, Any]:
    """A manual scan as Rocky pushes it."""
    boefje = {"id": "dns-records", "oci_image": "ghcr.io/kat/dns:1"}
    data = {"boefje": boefje, "input_ooi": f"Hostname|internet|{name}.example", "organization": "org1"}
    return client.post("/schedulers/boefje/push", {"organisation": "org1", "priority": 1, "data": data})


def pop(client: Client, _name: str) -> tuple[int, Any]:
    return client.post("/schedulers/boefje/pop?limit=1")


def pop_filtered(client: Client, _name: str) -> tuple[int, Any]:
    return client.post("/schedulers/boefje/pop?limit=1", WORKER_FILTER)


CALLS: dict[str, tuple[Call, int]] = {
    "push": (push, 201),
    "pop": (pop, 200),
    "pop_filtered": (pop_filtered, 200),
}


def client_process(url: str, operation: str, prefix: str, times: int, barrier: Any, results: Any) -> None:
    """One client in a process of its own, as each runner is; puts (first start, last end, latencies)."""
    call, expected = CALLS[operation]
    latencies = []
    client = Client(url)
    client.post("/schedulers/report/pop?limit=0")  # open the connection before the clock starts
    barrier.wait()
    began = time.perf_counter()
    for i in range(times):
        started = time.perf_counter()
        status, body = call(client, f"{prefix}-{i}")
        latencies.append(time.perf_counter() - started)
        if status != expected:
            raise SystemExit(f"bench/api.py: {status} {body}")
        if operation != "push" and not body["results"]:
            raise SystemExit("bench/api.py: a pop found the queue empty; the benchmark is miscounted")
    results.put((began, time.perf_counter(), latencies))
    client.close()


_rounds = itertools.count()


def run(url: str | list[str], operation: str, clients: int, per_client: int) -> tuple[float, list[float]]:
    """(operations per second, every latency) for `clients` processes doing `per_client` calls each; given
    several servers' URLs, client i talks to the server i mod their number (bench/scaleout.py)."""
    urls = [url] if isinstance(url, str) else url
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(clients)
    results = context.SimpleQueue()
    prefix = f"r{next(_rounds)}"
    processes = [
        context.Process(
            target=client_process,
            args=(urls[i % len(urls)], operation, f"{prefix}c{i}", per_client, barrier, results),
        )
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get() for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise SystemExit(f"bench/api.py: a client failed ({process.exitcode})")
    began = min(outcome[0] for outcome in outcomes)
    ended = max(outcome[1] for outcome in outcomes)
    latencies = [latency for outcome in outcomes for latency in outcome[2]]
    return len(latencies) / (ended - began), latencies


def line(label: str, rate: float, latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return f"{label:<34} {rate:8.0f}/s   p50 {cuts[49] * 1000:6.2f} ms   p99 {cuts[98] * 1000:6.2f} ms"


def implementations() -> str:
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio + h11 (install httptools and uvloop for uvicorn's fast paths)"
    return "uvloop + httptools"


Figures = dict[str, float]


def suite(server: subprocess.Popen[bytes], url: str) -> Figures:
    """One round against one server: throughput, p99 and the server's CPU per operation."""
    run(url, "push", 1, 50)  # warm up: connections, statement caches, the pop's compiled statement
    run(url, "pop", 1, 50)
    figures: Figures = {}
    for operation, times in (("push", SEQUENTIAL), ("pop", SEQUENTIAL // 2)):
        before = cpu_seconds(server.pid)
        rate, latencies = run(url, operation, 1, times)
        figures[f"{operation} cpu ms/op"] = 1000 * (cpu_seconds(server.pid) - before) / times
        figures[f"{operation} sequential /s"] = rate
        figures[f"{operation} sequential p99 ms"] = 1000 * statistics.quantiles(latencies, n=100)[98]
    for clients in CLIENTS:
        for operation in ("push", "pop"):
            rate, latencies = run(url, operation, clients, PER_CLIENT)
            figures[f"{operation} {clients:>2} clients /s"] = rate
            figures[f"{operation} {clients:>2} clients p99 ms"] = (
                1000 * statistics.quantiles(latencies, n=100)[98]
            )
    return figures


def medians(rounds: list[Figures]) -> Figures:
    return {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}


def main() -> None:
    print(f"bench/api.py: katsched api on loopback, SQLite, {implementations()}, {os.cpu_count()} CPUs")
    print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    servers: dict[str, Callable[[Path], tuple[subprocess.Popen[bytes], str]]] = {"katsched": start_server}
    if BEFORE is not None:
        servers["before"] = lambda directory: start_server(directory, BEFORE)
    servers["reference"] = start_reference
    rounds: dict[str, list[Figures]] = {name: [] for name in servers}
    for _ in range(ROUNDS):  # alternating, so all see the same machine
        for name, start in servers.items():
            with tempfile.TemporaryDirectory() as directory:
                server, url = start(Path(directory))
                try:
                    rounds[name].append(suite(server, url))
                finally:
                    server.terminate()
                    server.wait(timeout=30)
    figures = {name: medians(results) for name, results in rounds.items()}
    reference = figures.pop("reference")
    print(
        f"medians of {ROUNDS}; reference: a bare ASGI app with raw sqlite3 on the same uvicorn (bare_app.py)"
        + (f"; before: {BEFORE}" if BEFORE else "")
    )
    print(f"{'':<28}" + "".join(f"{name:>12}{'ratio':>8}" for name in figures) + f"{'reference':>12}")
    for name, value in reference.items():
        cells = "".join(f"{ours[name]:>12.2f}{ours[name] / value:>8.2f}" for ours in figures.values())
        print(f"{name:<28}{cells}{value:>12.2f}")
    print(f"load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("targets: cpu/op <= 2x, sequential /s >= 0.7x, 16 clients p99 <= 1.5x the reference")


if __name__ == "__main__":
    main()
