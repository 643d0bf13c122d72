"""Supervision of the daemon's components: a dead one is restarted with backoff, or the daemon stops loudly;
and the one signal handling (and heap settling) of the serving processes (`katsched daemon`, `katsched api`).

The main thread calls `check()` about once a second. A component whose thread died (or whose start failed)
is logged, then rebuilt from its factory after a growing pause. One that dies more than `budget` times within
`window` seconds, or whose start fails on a configuration error, raises `Fatal`: the daemon then stops with a
non-zero exit and that reason, and systemd's restart policy takes over. Nothing dies silently.
"""

import gc
import logging
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import FrameType, TracebackType
from typing import Protocol

from katsched.backoff import Backoff
from katsched.clock import Clock, SystemClock
from katsched.errors import ConfigError, StartupError

log = logging.getLogger("katsched.supervisor")


class Component(Protocol):
    def start(self) -> None: ...

    def alive(self) -> bool: ...

    def stop(self, timeout: float) -> bool:
        """Stop within `timeout` seconds; whether it stopped cleanly in time."""
        ...


class Fatal(Exception):
    """A component cannot be kept running; the message says which and why."""


class State(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


RESTART_BACKOFF = Backoff(initial=1.0, maximum=60.0, jitter=0.0)


@dataclass(frozen=True)
class RestartPolicy:
    backoff: Backoff = RESTART_BACKOFF
    budget: int = 5  # restarts allowed within `window` seconds
    window: float = 600.0

    def delay(self, restarts: int) -> float:
        """The pause before restart number `restarts` (1 for the first)."""
        return self.backoff.delay(restarts - 1)


class Supervised:
    """One component slot: the current instance, its state and its restart history."""

    def __init__(self, name: str, factory: Callable[[], Component]) -> None:
        self.name = name
        self.factory = factory
        self.component: Component | None = None
        self.state = State.STARTING
        self.restarts: deque[float] = deque()
        self.retry_at: float | None = None
        self.last_error: str | None = None

    @property
    def restart_count(self) -> int:
        return len(self.restarts)


class Supervisor:
    def __init__(
        self,
        slots: Sequence[Supervised],
        policy: RestartPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.slots = list(slots)
        self.policy = policy or RestartPolicy()
        self._monotonic = (clock or SystemClock()).monotonic

    def start_all(self) -> None:
        """Start the components in order; one that fails to start is retried by `check()` like a dead one."""
        for slot in self.slots:
            self._start(slot)

    def check(self) -> None:
        """Restart what died and is due for another try; raise `Fatal` when a component is beyond saving."""
        now = self._monotonic()
        for slot in self.slots:
            if slot.state is State.RUNNING and slot.component is not None and not slot.component.alive():
                self._died(slot, "its thread ended", now)
            if slot.state is State.RESTARTING and slot.retry_at is not None and now >= slot.retry_at:
                log.info("component_restarting name=%s restarts=%d", slot.name, slot.restart_count)
                self._start(slot)

    def stop_all(self, timeout: float, order: Sequence[str] | None = None) -> bool:
        """Stop the components (in `order` by name, default reverse start order) within `timeout` overall."""
        deadline = self._monotonic() + timeout
        by_name = {slot.name: slot for slot in self.slots}
        names = list(order) if order is not None else [slot.name for slot in reversed(self.slots)]
        clean = True
        for name in names:
            slot = by_name[name]
            if slot.component is not None and slot.state in (State.RUNNING, State.STARTING):
                remaining = max(0.1, deadline - self._monotonic())
                stopped = _stop_quietly(slot, remaining)
                clean = clean and stopped
                log.info("component_stopped name=%s clean=%s", name, str(stopped).lower())
            slot.state = State.STOPPED
        return clean

    def states(self) -> dict[str, dict[str, object]]:
        return {
            slot.name: {"state": slot.state.value, "restarts": slot.restart_count, "error": slot.last_error}
            for slot in self.slots
        }

    def _start(self, slot: Supervised) -> None:
        try:
            slot.component = slot.factory()
            slot.component.start()
        except (ConfigError, StartupError) as error:
            slot.state = State.FAILED
            slot.last_error = str(error)
            raise Fatal(f"component {slot.name} cannot start: {error}") from error
        except Exception as error:
            log.error("component_start_failed name=%s error=%s", slot.name, error, exc_info=True)
            self._died(slot, f"start failed: {error}", self._monotonic())
            return
        slot.state = State.RUNNING
        slot.retry_at = None

    def _died(self, slot: Supervised, why: str, now: float) -> None:
        while slot.restarts and now - slot.restarts[0] > self.policy.window:
            slot.restarts.popleft()
        slot.last_error = why
        if len(slot.restarts) >= self.policy.budget:
            slot.state = State.FAILED
            raise Fatal(
                f"component {slot.name} died {len(slot.restarts) + 1} times within "
                f"{self.policy.window:.0f}s; last: {why}"
            )
        slot.restarts.append(now)
        delay = self.policy.delay(len(slot.restarts))
        slot.state = State.RESTARTING
        slot.retry_at = now + delay
        log.error("component_died name=%s reason=%s restart_in=%.1f", slot.name, why, delay)


def _stop_quietly(slot: Supervised, timeout: float) -> bool:
    assert slot.component is not None
    try:
        return slot.component.stop(timeout)
    except Exception as error:
        log.error("component_stop_failed name=%s error=%s", slot.name, error, exc_info=True)
        return False


def log_thread_crashes() -> None:
    """Every exception that ends a thread is logged with the thread's name and traceback."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        info: tuple[type[BaseException], BaseException, TracebackType | None] | None = None
        if args.exc_value is not None:
            info = (args.exc_type, args.exc_value, args.exc_traceback)
        log.error("thread_crashed thread=%s error=%r", name, args.exc_value, exc_info=info)

    threading.excepthook = hook


class Signals:
    """First SIGTERM/SIGINT sets `stop`; a second one exits at once (1). With `reload`, SIGHUP sets `reload`.
    `process` names the process in the log lines (`daemon_stopping`, `api_stop_now`, …)."""

    def __init__(self, process: str = "daemon") -> None:
        self.process = process
        self.stop = threading.Event()
        self.reload = threading.Event()

    def install(self, *, reload: bool = True) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        if reload:
            signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stop.is_set():
            log.warning("%s_stop_now signal=%s", self.process, name)
            flush_logs()
            os._exit(1)
        log.info("%s_stopping signal=%s", self.process, name)
        self.stop.set()

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload.set()


def freeze_start_up_objects() -> None:
    """Once a serving process has started: what its start-up made (modules, the app, the caches of SQLAlchemy
    and pydantic) lives as long as the process, so it is moved out of the cyclic collector's generations
    (`gc.freeze`). A full collection walked all of it on the API's event loop, up to 50 ms during which every
    request in flight waited (the p99 of 16 clients' pops); what is made later is collected as before."""
    gc.collect()
    gc.freeze()


def flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
