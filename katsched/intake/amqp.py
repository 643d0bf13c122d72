"""RabbitMQ intake: one consumer per queue, decode → plan → commit → ack (SPEC §5).

Each `QueueConsumer` owns one pika `BlockingConnection`, used only by the thread that runs `run()` (the I/O
thread). The handler runs on a small worker pool; its outcome comes back through `add_callback_threadsafe`,
so a message is acknowledged only after the tasks it produced are committed. Poison goes to `<queue>.dead`
with the reason in its headers; a transient failure is requeued after a bounded, growing pause; a lost
connection is retried with backoff for as long as the consumer runs. A queue that exists with other
arguments is reported and left alone, never deleted.

Delivery is at least once: a message whose ack was lost with its connection is processed again, and the
planners' hash deduplication makes that harmless. With more than one worker, messages may be handled out of
order, as in the original scheduler.
"""

import contextlib
import functools
import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pika
import pika.exceptions

from katsched.backoff import Backoff
from katsched.clock import Clock, SystemClock
from katsched.intake._connection import connection_parameters, describe_error, mismatch, quietly
from katsched.intake._pool import Delivery, Outcome, Verdict, WorkerPool
from katsched.intake.messages import Batch, Handler, quoted

log = logging.getLogger("katsched.intake")
# pika logs every failed connection attempt at ERROR, with a traceback, from several modules; the consumer
# reports each one in a single line of its own. Raise this logger's level again to debug pika itself.
logging.getLogger("pika").setLevel(logging.CRITICAL)

REASON_HEADER = "x-katsched-reason"
QUEUE_HEADER = "x-katsched-queue"
DEAD_AT_HEADER = "x-katsched-dead-lettered-at"
POLL_SECONDS = 1.0  # the I/O loop wakes at least this often; stop() and every outcome wake it at once
DRAIN_POLL_SECONDS = 0.05


class ConsumerState(StrEnum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    MISCONFIGURED = "misconfigured"
    STOPPING = "stopping"


@dataclass(frozen=True)
class ConsumerStats:
    consumed: int = 0
    acked: int = 0
    dead_lettered: int = 0
    requeued: int = 0
    reconnects: int = 0
    abandoned: int = 0  # settled after their channel had gone: the broker delivers them again


class QueueMismatch(Exception):
    """The queue exists with other arguments than ours."""


class _Cancelled(Exception):
    """The broker cancelled our consumer (the queue was deleted)."""


class QueueConsumer:
    """Consumes one queue. `start()` runs it on its own named thread; or call `run()` from a thread you own.
    `stop(timeout)` finishes the messages being handled, leaves the rest to be redelivered, and closes.

    `work` is a `Handler` (one message at a time) or a `Batch` (several waiting messages planned together).
    Two workers by default: one can wait on a KAT service while the other commits, and more only queue up
    for SQLite's single write lock (whose busy wait sleeps) and for the GIL.
    """

    def __init__(
        self,
        url: str,
        queue: str,
        work: Handler | Batch[Any],
        *,
        prefetch: int = 200,
        workers: int = 2,
        retry_backoff_max: float = 60.0,
        reconnect_backoff: Backoff | None = None,
        requeue_backoff: Backoff | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
        connection_name: str | None = None,
    ) -> None:
        self.queue = queue
        self.dead_letter_queue = f"{queue}.dead"
        self._parameters = connection_parameters(url, connection_name or f"katsched {queue}")
        self._prefetch = prefetch
        self._reconnect_backoff = reconnect_backoff or Backoff(initial=1.0, maximum=retry_backoff_max)
        self._clock = clock or SystemClock()
        self._monotonic = self._clock.monotonic
        self._rand = rand
        requeue = requeue_backoff or Backoff(initial=0.5, maximum=retry_backoff_max)
        self._pool = WorkerPool(queue, work, self._settle, workers=workers, backoff=requeue, rand=rand)
        self._lock = threading.Lock()
        self._counts = {name: 0 for name in ConsumerStats.__dataclass_fields__}
        self._state = ConsumerState.STOPPED
        self._last_error: str | None = None
        self._stopping = threading.Event()
        self._running = threading.Event()
        self._done = threading.Event()
        self._drain_until = 0.0
        self._thread: threading.Thread | None = None
        # Owned by the I/O thread; `_connection` is also read by workers to schedule callbacks.
        self._connection: Any = None
        self._channel: Any = None
        self._session = 0
        self._cancelled = False
        self._session_started = False
        self._ever_connected = False
        self._outbox: list[Outcome] = []
        self._flush_scheduled = False
        # This session's delivery tags that are not acked, nacked or dead-lettered yet.
        self._unsettled: set[int] = set()

    # What the daemon, /health and the dashboard read.

    @property
    def state(self) -> ConsumerState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is ConsumerState.CONNECTED

    @property
    def last_error(self) -> str | None:
        """Why the consumer is disconnected or misconfigured; None while all is well."""
        return self._last_error

    @property
    def stats(self) -> ConsumerStats:
        with self._lock:
            return ConsumerStats(**self._counts)

    # Lifecycle.

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name=f"intake-{self.queue}", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        """Returns once the connection is closed, or after `timeout` seconds, whichever comes first."""
        deadline = self._monotonic() + timeout
        self._drain_until = deadline - min(1.0, timeout / 5)
        self._stopping.set()
        self._pool.stop()
        self._wake()
        if not self._running.is_set():
            return
        if not self._done.wait(max(0.0, deadline - self._monotonic())):
            log.warning("consumer_stop_timeout queue=%s timeout=%.1f", self.queue, timeout)

    def run(self) -> None:
        """Consumes until `stop()`; every failure is followed by a reconnection attempt after a pause."""
        self._running.set()
        self._pool.start()
        attempt = 0
        self._state = ConsumerState.CONNECTING  # after a failure, the state says why until connected again
        try:
            while not self._stopping.is_set():
                failure = self._one_session()
                if self._session_started:
                    attempt = 0
                if failure is None or self._stopping.is_set():
                    break
                delay = self._reconnect_backoff.delay(attempt, self._rand())
                attempt += 1
                self._report(failure, delay)
                self._stopping.wait(delay)
        finally:
            self._pool.shutdown()
            self._state = ConsumerState.STOPPED
            self._done.set()
            log.info("consumer_stopped queue=%s", self.queue)

    # One connection, from connect to close.

    def _one_session(self) -> tuple[ConsumerState, str] | None:
        self._session_started = False
        try:
            self._session_body()
        except QueueMismatch as error:
            return ConsumerState.MISCONFIGURED, str(error)
        except _Cancelled:
            return ConsumerState.DISCONNECTED, "consumer cancelled by the broker (queue deleted?)"
        except (pika.exceptions.AMQPError, OSError) as error:
            return ConsumerState.DISCONNECTED, describe_error(error)
        except Exception as error:  # a bug here must not end intake for good: log it loudly and reconnect
            log.exception("consumer_failed queue=%s", self.queue)
            return ConsumerState.DISCONNECTED, describe_error(error)
        finally:
            self._pool.drop_waiting()
            self._forget_connection()
        return None

    def _session_body(self) -> None:
        connection = pika.BlockingConnection(self._parameters)
        try:
            channel = connection.channel()
            self._cancelled = False
            self._prepare(channel)
            self._begin(connection, channel)
            while not (self._stopping.is_set() or self._cancelled):
                connection.process_data_events(time_limit=POLL_SECONDS)
            if self._cancelled:
                raise _Cancelled
            self._drain(connection, channel)
        finally:
            if connection.is_open:
                quietly(connection.close)

    def _prepare(self, channel: Any) -> None:
        channel.confirm_delivery()  # a dead-lettered message is acked only once the broker holds its copy
        for name in (self.queue, self.dead_letter_queue):
            try:
                channel.queue_declare(queue=name, durable=True)
            except pika.exceptions.ChannelClosedByBroker as error:
                if error.reply_code != 406:
                    raise
                raise QueueMismatch(mismatch(name, error.reply_text)) from None
        channel.basic_qos(prefetch_count=self._prefetch)
        channel.add_on_cancel_callback(self._on_cancelled)
        channel.basic_consume(queue=self.queue, on_message_callback=self._on_message)

    def _begin(self, connection: Any, channel: Any) -> None:
        with self._lock:
            self._session += 1
            self._connection = connection
            self._channel = channel
            stale, self._outbox, self._flush_scheduled = self._outbox, [], False
            self._unsettled = set()
            self._counts["abandoned"] += len(stale)
            if self._ever_connected:
                self._counts["reconnects"] += 1
        self._session_started = True
        self._state = ConsumerState.CONNECTED
        self._last_error = None
        event = "consumer_reconnected" if self._ever_connected else "consumer_connected"
        self._ever_connected = True
        log.info("%s queue=%s prefetch=%d", event, self.queue, self._prefetch)

    def _drain(self, connection: Any, channel: Any) -> None:
        """Stop deliveries, let the messages being handled commit and be acked (bounded), leave the rest."""
        self._state = ConsumerState.STOPPING
        for tag in list(channel.consumer_tags):
            channel.basic_cancel(tag)
        left = self._pool.drop_waiting()
        while self._pool.pending and self._monotonic() < self._drain_until:
            connection.process_data_events(time_limit=DRAIN_POLL_SECONDS)
        self._flush_outbox()
        unfinished = self._pool.pending
        log.info("consumer_drained queue=%s redelivered=%d unfinished=%d", self.queue, left, unfinished)

    def _forget_connection(self) -> None:
        with self._lock:
            self._connection = None
            self._channel = None

    def _report(self, failure: tuple[ConsumerState, str], delay: float) -> None:
        state, reason = failure
        self._state = state
        self._last_error = reason
        if state is ConsumerState.MISCONFIGURED:
            log.error(
                "consumer_queue_mismatch queue=%s reason=%s retry_in=%.2f", self.queue, quoted(reason), delay
            )
        else:
            log.warning(
                "consumer_disconnected queue=%s reason=%s retry_in=%.2f", self.queue, quoted(reason), delay
            )

    # I/O-thread callbacks.

    def _on_message(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        with self._lock:
            self._counts["consumed"] += 1
        self._unsettled.add(method.delivery_tag)
        delivery = Delivery(
            tag=method.delivery_tag,
            body=body,
            session=self._session,
            content_type=properties.content_type,
            headers=dict(properties.headers or {}),
        )
        self._pool.submit(delivery)

    def _on_cancelled(self, _frame: Any) -> None:
        self._cancelled = True

    # Outcomes: produced on worker threads, applied on the I/O thread.

    def _settle(self, outcomes: Sequence[Outcome]) -> None:
        with self._lock:
            self._outbox.extend(outcomes)
            if self._flush_scheduled or self._connection is None:
                return
            self._flush_scheduled = True
            connection = self._connection
        # If the connection is gone, the broker delivers the message again to the next session.
        with contextlib.suppress(pika.exceptions.ConnectionWrongStateError):
            connection.add_callback_threadsafe(self._flush_outbox)

    def _flush_outbox(self) -> None:
        with self._lock:
            outcomes, self._outbox, self._flush_scheduled = self._outbox, [], False
        acks: list[int] = []
        for outcome in outcomes:
            if not self._current(outcome.delivery):
                self._count("abandoned")
            elif outcome.verdict is Verdict.ACK:
                acks.append(outcome.delivery.tag)
            else:
                self._apply(outcome)
        self._ack(acks)

    def _current(self, delivery: Delivery) -> bool:
        """Whether the delivery came on the channel that is open now (a tag means nothing on another)."""
        channel = self._channel
        return channel is not None and delivery.session == self._session and channel.is_open

    def _ack(self, tags: Sequence[int]) -> None:
        """Acknowledge with one frame the oldest unsettled deliveries, as far as they are all among `tags`
        (AMQP's `multiple`), and the rest one by one: a batch of messages costs one frame, not one each.
        Each frame is a write on the socket, and a wait for the GIL after it while a worker plans."""
        if not tags:
            return
        acked = set(tags)
        oldest = sorted(self._unsettled)
        run = 0
        while run < len(oldest) and oldest[run] in acked:
            run += 1
        if run > 1:
            self._channel.basic_ack(delivery_tag=oldest[run - 1], multiple=True)
            alone = sorted(acked - set(oldest[:run]))
        else:
            alone = sorted(acked)
        for tag in alone:
            self._channel.basic_ack(delivery_tag=tag)
        self._unsettled -= acked
        with self._lock:
            self._counts["acked"] += len(acked)

    def _apply(self, outcome: Outcome) -> None:
        """Dead-letter or requeue a delivery of the current channel."""
        channel, delivery = self._channel, outcome.delivery
        if outcome.verdict is Verdict.REQUEUE:
            # Held (unacknowledged) for its delay, then handed back; pika runs the timer on this thread.
            self._connection.call_later(outcome.delay, functools.partial(self._requeue, delivery))
        else:
            self._dead_letter(channel, outcome)
            channel.basic_ack(delivery_tag=delivery.tag)
            self._unsettled.discard(delivery.tag)
            self._count("dead_lettered")
            log.warning("message_dead_lettered queue=%s reason=%s", self.queue, quoted(outcome.reason))

    def _requeue(self, delivery: Delivery) -> None:
        if not self._current(delivery):
            self._count("abandoned")
            return
        self._channel.basic_nack(delivery_tag=delivery.tag, requeue=True)
        self._unsettled.discard(delivery.tag)
        self._count("requeued")

    def _dead_letter(self, channel: Any, outcome: Outcome) -> None:
        headers = dict(outcome.delivery.headers)
        headers[REASON_HEADER] = outcome.reason
        headers[QUEUE_HEADER] = self.queue
        headers[DEAD_AT_HEADER] = self._clock.now().isoformat()
        properties = pika.BasicProperties(
            content_type=outcome.delivery.content_type,
            delivery_mode=pika.DeliveryMode.Persistent,
            headers=headers,
        )
        channel.basic_publish(
            exchange="",
            routing_key=self.dead_letter_queue,
            body=outcome.delivery.body,
            properties=properties,
            mandatory=True,
        )

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _wake(self) -> None:
        with self._lock:
            connection = self._connection
        if connection is not None:
            quietly(lambda: connection.add_callback_threadsafe(lambda: None))
