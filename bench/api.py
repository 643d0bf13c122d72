"""API benchmark: push and pop over HTTP against a real uvicorn on loopback, sequentially and with 1/4/16
concurrent clients, on katsched's SQLite default.

The server is `katsched api` in its own process; each client is a process of its own (as each runner is)
with one keep-alive connection, so no client waits for another's GIL. Pushes look like Rocky's manual scans;
pops like a boefje worker's (`limit=1`, optionally with the worker's filter body).

    uvx nox -s bench -- bench/api.py            (or: python bench/api.py [--quick])

Reference, the original scheduler (mula on PostgreSQL) measured on this kind of machine (2 cores):
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

QUICK = "--quick" in sys.argv
SEQUENTIAL = 600 if QUICK else 3000
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


def start_server(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = directory / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{directory / "bench.db"}"\n[logging]\nlevel = "WARNING"\n'
    )
    command = [sys.executable, "-m", "katsched", "api", "--config", str(config), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):  # bounded wait for the server to answer /health (30 s at most)
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("bench/api.py: katsched api did not start")


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


def run(url: str, operation: str, clients: int, per_client: int) -> tuple[float, list[float]]:
    """(operations per second, every latency) for `clients` processes doing `per_client` calls each."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(clients)
    results = context.SimpleQueue()
    prefix = f"r{next(_rounds)}"
    processes = [
        context.Process(
            target=client_process, args=(url, operation, f"{prefix}c{i}", per_client, barrier, results)
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


def main() -> None:
    print(f"bench/api.py: katsched api on loopback, SQLite, {implementations()}, {os.cpu_count()} CPUs")
    print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as directory:
        server, url = start_server(Path(directory))
        try:
            run(url, "push", 1, 50)  # warm up: connections, statement caches, the pop's compiled statement
            run(url, "pop", 1, 50)
            print(line("sequential push", *run(url, "push", 1, SEQUENTIAL)))
            print(line("sequential pop (limit=1)", *run(url, "pop", 1, SEQUENTIAL // 2)))
            print(line("sequential pop, worker filter", *run(url, "pop_filtered", 1, SEQUENTIAL // 2)))
            for clients in CLIENTS:
                print(line(f"{clients:>2} clients push", *run(url, "push", clients, PER_CLIENT)))
                print(line(f"{clients:>2} clients pop", *run(url, "pop", clients, PER_CLIENT)))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print("reference (mula, PostgreSQL): 63 pushes/s p99 24 ms, 107 pops/s p99 14 ms; 16 clients p99 ~290 ms")


if __name__ == "__main__":
    main()
