"""The workers that run a consumer's handler off the connection's I/O thread.

The I/O thread only moves frames, so heartbeats are answered while a planner waits on a slow service. A
worker takes one delivery, or for a `Batch` also those already waiting behind it, and turns each into exactly
one `Outcome` (ack, dead-letter or requeue); a batch's outcomes are handed back together through `settle`, and
the consumer applies them on the I/O thread, the only thread that may touch the channel. A delivery dropped
because the consumer is stopping gets no outcome at all: its channel closes and the broker delivers it again.

A transient failure does two things, both bounded and growing: it closes a shared gate for a pause that
grows with the failures in a row (while a service is down, no worker hammers it), and the failed message is
held for a delay that grows with its own failures before it goes back to the broker (no hot loop, even for
one message that keeps failing while the others succeed).
"""

import hashlib
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from katsched.backoff import Backoff
from katsched.errors import InvalidValue, MessageError, ServiceError, StorageUnavailable
from katsched.intake.messages import Batch, Handler, one_line, quoted, single

log = logging.getLogger("katsched.intake")

# The message decoded, so it is sound: when a KAT service or the database refuses the work, retry later. A
# service that is down raises ServiceUnavailable; other ServiceErrors (a refused login, an answer that does
# not parse) are as likely fixed by the operator as by time, and the message must survive until they are.
TRANSIENT = (ServiceError, StorageUnavailable)
# The message's own fault, found by decoding it or by the database refusing one of its values: dead-lettered
# with the reason, no traceback. Anything else that escapes the planner is a bug: dead-lettered too (never
# requeued forever, never dropped), with an ERROR line and its traceback.
REFUSED = (MessageError, InvalidValue)


class Verdict(Enum):
    ACK = "ack"
    DEAD = "dead"
    REQUEUE = "requeue"


@dataclass(frozen=True)
class Delivery:
    tag: int
    body: bytes
    session: int
    content_type: str | None = None
    headers: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    delivery: Delivery
    verdict: Verdict
    reason: str = ""
    delay: float = 0.0  # for REQUEUE: how long the message is held before it goes back to the broker


Settle = Callable[[Sequence[Outcome]], None]


class _Gate:
    """Open unless a worker is pausing after a transient failure. The pause grows with the failures in a row,
    whichever messages they hit (a service that is down), and resets after any success."""

    def __init__(self, backoff: Backoff, rand: Callable[[], float]) -> None:
        self._backoff = backoff
        self._rand = rand
        self._condition = threading.Condition()
        self._failures = 0
        self._closers = 0

    def close(self) -> float:
        with self._condition:
            pause = self._backoff.delay(self._failures, self._rand())
            self._failures += 1
            self._closers += 1
            return pause

    def reopen(self) -> None:
        with self._condition:
            self._closers -= 1
            self._condition.notify_all()

    def succeeded(self) -> None:
        with self._condition:
            self._failures = 0

    def wait_open(self, stopping: threading.Event) -> None:
        with self._condition:
            self._condition.wait_for(lambda: not self._closers or stopping.is_set())

    def wake(self) -> None:
        with self._condition:
            self._condition.notify_all()


class _Attempts:
    """Transient failures per message body, so that one message that keeps failing waits longer each time
    even while others succeed. Bounded: the oldest entries are forgotten first."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._failures: OrderedDict[bytes, int] = OrderedDict()

    def failed(self, body: bytes) -> int:
        """How often this body failed before now."""
        key = _digest(body)
        with self._lock:
            before = self._failures.pop(key, 0)
            self._failures[key] = before + 1
            while len(self._failures) > self._limit:
                self._failures.popitem(last=False)
            return before

    def settled(self, body: bytes) -> None:
        if self._failures:  # unlocked peek: the common case, nothing failed, costs no hashing
            with self._lock:
                self._failures.pop(_digest(body), None)


def _digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=16).digest()


class WorkerPool:
    def __init__(
        self,
        queue_name: str,
        work: Handler | Batch[Any],
        settle: Settle,
        *,
        workers: int,
        backoff: Backoff,
        rand: Callable[[], float],
    ) -> None:
        if workers < 1:
            raise ValueError("a consumer needs at least one worker")
        self._queue_name = queue_name
        self._batch: Batch[Any] = work if isinstance(work, Batch) else single(work)
        self._settle = settle
        self._backoff = backoff
        self._rand = rand
        self._gate = _Gate(backoff, rand)
        self._attempts = _Attempts()
        self._inbox: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._pending = 0
        self._counting = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"intake-{queue_name}-{n}", daemon=True)
            for n in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, delivery: Delivery) -> None:
        with self._counting:
            self._pending += 1
        self._inbox.put(delivery)

    @property
    def pending(self) -> int:
        """Deliveries submitted and neither settled nor dropped yet."""
        with self._counting:
            return self._pending

    def drop_waiting(self) -> int:
        """Forgets deliveries no worker has started; the broker redelivers them when the channel closes."""
        dropped = 0
        while True:
            try:
                delivery = self._inbox.get_nowait()
            except queue.Empty:
                break
            if delivery is None:  # a shutdown sentinel: leave it for a worker to find
                self._inbox.put(None)
                break
            dropped += 1
            self._finished()
        return dropped

    def stop(self) -> None:
        """From now on, no new delivery is started and every backoff pause ends at once."""
        self._stopping.set()
        self._gate.wake()

    def shutdown(self) -> None:
        self.stop()
        for _ in self._threads:
            self._inbox.put(None)

    def _finished(self) -> None:
        with self._counting:
            self._pending -= 1

    def _work(self) -> None:
        while (first := self._inbox.get()) is not None:
            deliveries = [first, *self._more(self._batch.size - 1)]
            try:
                self._gate.wait_open(self._stopping)
                if not self._stopping.is_set():
                    self._settle(self._process(deliveries))
            except Exception:  # a failing settle must not kill the worker; the broker redelivers
                log.exception("message_settle_failed queue=%s", self._queue_name)
            finally:
                for _ in deliveries:
                    self._finished()

    def _more(self, limit: int) -> list[Delivery]:
        """Up to `limit` deliveries that are already waiting; never waits for one."""
        more: list[Delivery] = []
        while len(more) < limit:
            try:
                delivery = self._inbox.get_nowait()
            except queue.Empty:
                break
            if delivery is None:  # a shutdown sentinel: leave it for a worker to find
                self._inbox.put(None)
                break
            more.append(delivery)
        return more

    def _process(self, deliveries: list[Delivery]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        sound: list[tuple[Delivery, object]] = []
        for delivery in deliveries:
            try:
                sound.append((delivery, self._batch.decode(delivery.body)))
            except Exception as error:
                outcomes.append(self._dead(delivery, error))
        if sound:
            outcomes += self._plan(sound)
        return outcomes

    def _plan(self, sound: list[tuple[Delivery, object]]) -> list[Outcome]:
        deliveries = [delivery for delivery, _ in sound]
        try:
            self._batch.plan([item for _, item in sound])
        except TRANSIENT as error:
            return self._requeue(deliveries, one_line(f"{type(error).__name__}: {error}"))
        except Exception as error:
            if len(sound) > 1:  # find the message at fault: the others are planned (again: idempotent)
                return [outcome for pair in sound for outcome in self._plan([pair])]
            return [self._dead(deliveries[0], error)]
        self._gate.succeeded()
        for delivery in deliveries:
            self._attempts.settled(delivery.body)
        return [Outcome(delivery, Verdict.ACK) for delivery in deliveries]

    def _dead(self, delivery: Delivery, error: Exception) -> Outcome:
        if isinstance(error, REFUSED):
            reason = one_line(str(error))
        else:
            # A bug, or a service refusing this very message: keep the message, in the dead-letter queue,
            # rather than retrying it forever or dropping it.
            log.error("message_failed queue=%s", self._queue_name, exc_info=error)
            reason = one_line(f"handler failed: {type(error).__name__}: {error}")
        self._attempts.settled(delivery.body)
        return Outcome(delivery, Verdict.DEAD, reason)

    def _requeue(self, deliveries: list[Delivery], reason: str) -> list[Outcome]:
        delays = [self._backoff.delay(self._attempts.failed(d.body), self._rand()) for d in deliveries]
        pause = self._gate.close()
        log.warning(
            "message_requeued queue=%s count=%d delay=%.2f pause=%.2f reason=%s",
            self._queue_name, len(deliveries), max(delays), pause, quoted(reason),
        )  # fmt: skip
        try:
            self._stopping.wait(pause)
        finally:
            self._gate.reopen()
        stopping = self._stopping.is_set()
        return [
            Outcome(delivery, Verdict.REQUEUE, reason, delay=0.0 if stopping else delay)
            for delivery, delay in zip(deliveries, delays, strict=True)
        ]
