"""Command start-up benchmark: how long `katsched` takes to answer, against `python -c pass` in the same run.

Targets (issue 12): `katsched --help` ≤ 0.3 s, `katsched queue ls` ≤ 0.6 s, and a daemon whose port is in use
exits within 2 s of having imported itself (measured here whole, imports included). Each figure is the
median of 3 runs, after one warm-up run that writes the byte code (as an install with --compile-bytecode has
it); the load average is printed beside them, since on a shared machine it moves every figure.

    uvx nox -s bench -- bench/cli.py        (or: python bench/cli.py)
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

RUNS = 3
PROGRAM = str(Path(sys.executable).with_name("katsched"))
# Byte code is written and reused, as it is for an installed program (the test environment may turn it off).
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def seconds(command: Sequence[str], cwd: Path, expect: int = 0) -> float:
    """The median wall time of RUNS runs of `command`, after one warm-up run."""
    times = []
    for attempt in range(RUNS + 1):
        started = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if result.returncode != expect:
            sys.exit(f"{' '.join(command)}: exit {result.returncode}, expected {expect}: {result.stderr}")
        if attempt:
            times.append(elapsed)
    return statistics.median(times)


def populated(directory: Path, count: int = 200) -> Path:
    """A config whose SQLite database holds `count` queued tasks, for `queue ls` to list."""
    from katsched.clock import SystemClock
    from katsched.core.ports import TaskDraft
    from katsched.store.engine import build_engine
    from katsched.store.migrate import upgrade
    from katsched.store.queue import SqlTaskQueue

    config = directory / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{directory / "katsched.db"}"\n')
    engine = build_engine(f"sqlite:///{directory / 'katsched.db'}")
    upgrade(engine)
    queue = SqlTaskQueue(engine, SystemClock())
    for n in range(count):
        data = {
            "boefje": {"id": f"b{n}"},
            "input_ooi": f"Hostname|internet|h{n}.example",
            "organization": "o",
        }
        queue.push(TaskDraft("boefje", "o", 5, data))
    engine.dispose()
    return config


def port_in_use_config(directory: Path, port: int) -> Path:
    config = directory / "busy.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{directory / "busy.db"}"\n[api]\nport = {port}\n')
    return config


def main() -> None:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as name, socket.socket() as holder:
        directory = Path(name)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        config = populated(directory)
        busy = port_in_use_config(directory, holder.getsockname()[1])
        reference = seconds([sys.executable, "-c", "pass"], directory)
        figures = [
            ("katsched --help", seconds([PROGRAM, "--help"], directory), 0.3),
            ("katsched --version", seconds([PROGRAM, "--version"], directory), 0.3),
            (
                "katsched queue ls (200 queued)",
                seconds([PROGRAM, "queue", "ls", "-c", str(config)], directory),
                0.6,
            ),
            ("katsched queue stats", seconds([PROGRAM, "queue", "stats", "-c", str(config)], directory), 0.6),
            (
                "daemon, port in use → exit 1",
                seconds([PROGRAM, "daemon", "-c", str(busy)], directory, 1),
                2.0,  # imports included: stricter than "2 s after its imports"
            ),
        ]
    print(
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; median of {RUNS}"
    )
    print(f"{'command':<34}{'seconds':>9}{'ratio to pass':>18}{'target':>11}")
    print(f"{'python -c pass (reference)':<34}{reference:>9.3f}{1:>18.1f}{'':>11}")
    for label, value, target in figures:
        mark = "" if target is None else f"≤{target}" + (" ok" if value <= target else " MISS")
        print(f"{label:<34}{value:>9.3f}{value / reference:>18.1f}{mark:>11}")


if __name__ == "__main__":
    main()
