"""Supervision (restart with backoff, or stop loudly), the two-stage shutdown, and sd_notify."""

import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from katsched.backoff import Backoff
from katsched.errors import ConfigError
from katsched.supervisor import Fatal, RestartPolicy, Signals, State, Supervised, Supervisor
from katsched.systemd import Notifier
from katsched.testing import FakeClock
from tests.integration.test_daemon_lifecycle import DaemonProcess, quiet_config, wait_until

pytestmark = pytest.mark.integration


class FakeComponent:
    def __init__(self, fail_start: BaseException | None = None) -> None:
        self.running = False
        self.fail_start = fail_start
        self.stopped_with: float | None = None

    def start(self) -> None:
        if self.fail_start is not None:
            raise self.fail_start
        self.running = True

    def alive(self) -> bool:
        return self.running

    def stop(self, timeout: float) -> bool:
        self.stopped_with = timeout
        self.running = False
        return True


@pytest.fixture
def built() -> list[FakeComponent]:
    return []


def supervisor_of(
    built: list[FakeComponent],
    clock: FakeClock,
    *,
    initial: float,
    maximum: float,
    budget: int,
    window: float,
) -> Supervisor:
    def factory() -> FakeComponent:
        built.append(FakeComponent())
        return built[-1]

    policy = RestartPolicy(Backoff(initial=initial, maximum=maximum, jitter=0.0), budget, window)
    return Supervisor([Supervised("worker", factory)], policy, clock=clock)


def test_a_dead_component_is_rebuilt_after_a_growing_pause(
    built: list[FakeComponent], caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    supervisor = supervisor_of(built, clock, initial=1.0, maximum=60.0, budget=5, window=600.0)
    supervisor.start_all()
    for expected_pause in (1.0, 2.0, 4.0):
        built[-1].running = False  # its thread ended
        supervisor.check()
        assert supervisor.slots[0].state is State.RESTARTING
        clock.advance(seconds=expected_pause - 0.01)
        supervisor.check()
        assert supervisor.slots[0].state is State.RESTARTING
        clock.advance(seconds=0.01)
        supervisor.check()
        assert supervisor.slots[0].state is State.RUNNING and built[-1].running
    assert len(built) == 4
    assert "component_died name=worker reason=its thread ended restart_in=4.0" in caplog.text


def test_too_many_deaths_stop_the_daemon_with_the_reason(built: list[FakeComponent]) -> None:
    clock = FakeClock()
    supervisor = supervisor_of(built, clock, initial=1.0, maximum=1.0, budget=2, window=600.0)
    supervisor.start_all()
    for _ in range(2):
        built[-1].running = False
        supervisor.check()
        clock.advance(seconds=1)
        supervisor.check()
    built[-1].running = False
    with pytest.raises(Fatal, match="component worker died 3 times within 600s; last: its thread ended"):
        supervisor.check()
    assert supervisor.states()["worker"]["state"] == "failed"


def test_deaths_long_ago_do_not_count(built: list[FakeComponent]) -> None:
    clock = FakeClock()
    supervisor = supervisor_of(built, clock, initial=1.0, maximum=1.0, budget=1, window=60.0)
    supervisor.start_all()
    for _ in range(3):
        built[-1].running = False
        supervisor.check()
        clock.advance(seconds=61)
        supervisor.check()
    assert supervisor.slots[0].state is State.RUNNING


def test_a_failed_start_is_retried_but_a_configuration_error_is_fatal() -> None:
    attempts: list[FakeComponent] = []

    def flaky() -> FakeComponent:
        attempts.append(FakeComponent(OSError("address in use") if len(attempts) == 0 else None))
        return attempts[-1]

    clock = FakeClock()
    supervisor = Supervisor([Supervised("api", flaky)], clock=clock)
    supervisor.start_all()
    assert supervisor.slots[0].state is State.RESTARTING
    clock.advance(seconds=1)
    supervisor.check()
    assert supervisor.slots[0].state is State.RUNNING

    broken = Supervisor([Supervised("intake", lambda: FakeComponent(ConfigError("[amqp] url: bad")))])
    with pytest.raises(Fatal, match=r"component intake cannot start: \[amqp\] url: bad"):
        broken.start_all()


def test_stop_all_follows_the_given_order_within_the_bound() -> None:
    stopped: list[str] = []

    class Named(FakeComponent):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def stop(self, timeout: float) -> bool:
            stopped.append(self.name)
            return super().stop(timeout)

    slots = [Supervised(name, lambda name=name: Named(name)) for name in ("api", "recurring", "intake")]
    supervisor = Supervisor(slots)
    supervisor.start_all()
    assert supervisor.stop_all(5.0, order=["intake", "recurring", "api"])
    assert stopped == ["intake", "recurring", "api"]


def test_the_second_signal_stops_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)
    signals = Signals()
    signals._on_stop(signal.SIGTERM, None)
    assert signals.stop.is_set() and exits == []
    signals._on_stop(signal.SIGINT, None)
    assert exits == [1]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(30)
        yield path, listener


def test_notifier_speaks_the_sd_notify_protocol(notify_socket: tuple[str, socket.socket]) -> None:
    path, listener = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())})
    assert notifier.watchdog_interval == 2.0
    notifier.ready("running")
    notifier.watchdog()
    notifier.stopping()
    received = [listener.recv(4096).decode() for _ in range(3)]
    assert received == ["READY=1\nSTATUS=running", "WATCHDOG=1", "STOPPING=1\nSTATUS=stopping"]


def test_notifier_without_systemd_does_nothing() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("running")
    notifier.watchdog()
    assert (
        Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval
        is None
    )


def test_the_daemon_tells_systemd_ready_watchdog_and_stopping(
    notify_socket: tuple[str, socket.socket], tmp_path: Path
) -> None:
    path, listener = notify_socket
    messages: list[str] = []
    lock = threading.Lock()

    def receive() -> None:
        try:
            while True:
                message = listener.recv(4096).decode()
                with lock:
                    messages.append(message)
        except OSError:
            return

    def seen(prefix: str) -> bool:
        with lock:
            return any(message.startswith(prefix) for message in messages)

    threading.Thread(target=receive, name="notify-listener", daemon=True).start()
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
    daemon = DaemonProcess(quiet_config(tmp_path), tmp_path, env)
    try:
        wait_until(lambda: seen("READY=1\nSTATUS=running"), "the daemon says READY")
        wait_until(lambda: seen("WATCHDOG=1"), "the daemon feeds the watchdog")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        wait_until(lambda: seen("STOPPING=1"), "the daemon says STOPPING")
    finally:
        daemon.kill()


def test_a_crashing_thread_is_logged_with_its_name(caplog: pytest.LogCaptureFixture) -> None:
    from katsched.supervisor import log_thread_crashes

    previous = threading.excepthook
    log_thread_crashes()
    try:

        def crash() -> None:
            raise RuntimeError("boom")

        thread = threading.Thread(target=crash, name="doomed")
        with caplog.at_level(logging.ERROR, "katsched.supervisor"):
            thread.start()
            thread.join()
        assert "thread_crashed thread=doomed error=RuntimeError('boom')" in caplog.text
    finally:
        threading.excepthook = previous
