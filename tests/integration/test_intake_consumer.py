"""`QueueConsumer` against the real broker, with small handlers: acks after commit, dead letters, requeue with
backoff, lost connections, a broker that goes away, a mismatched queue, and a graceful stop."""

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import text

from katsched.backoff import Backoff
from katsched.core.models import ScanProfileMutation
from katsched.errors import InvalidValue, MessageError, ServiceUnavailable, StorageUnavailable
from katsched.intake import Batch, ConsumerState, QueueConsumer, mutation_handler, sample_mutation
from katsched.intake.amqp import DEAD_AT_HEADER, QUEUE_HEADER, REASON_HEADER
from katsched.store.engine import build_engine, write
from tests.integration.test_intake_publish import (
    AMQP_URL,
    FAST,
    Broker,
    HoldAt,
    TcpProxy,
    running,
    scratch_queue,
    wait_until,
)

pytestmark = [pytest.mark.amqp, pytest.mark.integration]


class DedupStore:
    """Commits keys as a task queue commits hashes: a second commit of the same key changes nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.commits: Counter[str] = Counter()

    def commit(self, key: str) -> None:
        with self._lock:
            self.commits[key] += 1

    @property
    def tasks(self) -> int:
        with self._lock:
            return len(self.commits)


def numbered(count: int, start: int = 0) -> list[bytes]:
    return [json.dumps({"n": n}).encode() for n in range(start, start + count)]


def committing(store: DedupStore) -> Any:
    def handle(body: bytes) -> None:
        try:
            store.commit(f"task-{json.loads(body)['n']}")
        except (ValueError, KeyError) as error:
            raise MessageError(f"n: {error}") from None

    return handle


def consumer_for(queue: str, handler: Any, **options: Any) -> QueueConsumer:
    options.setdefault("reconnect_backoff", FAST)
    options.setdefault("requeue_backoff", FAST)
    return QueueConsumer(options.pop("url", AMQP_URL), queue, handler, **options)


@pytest.fixture
def queue_name(broker: Broker) -> Iterator[str]:
    yield from scratch_queue(broker)


@pytest.fixture
def store() -> DedupStore:
    return DedupStore()


def test_a_message_is_acked_only_after_its_handler_returns(broker: Broker, queue_name: str) -> None:
    release, committed = threading.Event(), threading.Event()

    def slow_commit(_body: bytes) -> None:
        assert release.wait(DEADLINE_SECONDS)
        committed.set()

    with running(consumer_for(queue_name, slow_commit)) as consumer:
        broker.publish(queue_name, b'{"n": 1}')
        wait_until(lambda: consumer.stats.consumed == 1, "the message is delivered")
        assert consumer.stats.acked == 0
        assert broker.unacknowledged(queue_name) == 1
        release.set()
        wait_until(lambda: consumer.stats.acked == 1, "the message is acked")
        assert committed.is_set()
    assert broker.ready(queue_name) == 0
    assert broker.unacknowledged(queue_name) == 0


def test_poison_is_dead_lettered_with_its_reason_and_the_next_message_is_processed(
    broker: Broker, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    planned: list[ScanProfileMutation] = []

    class Planner:
        def plan_for_mutation(self, mutation: ScanProfileMutation) -> None:
            planned.append(mutation)

    bad_level = json.loads(sample_mutation("org1", "Hostname|internet|b.example", 1))
    bad_level["value"]["scan_profile"]["level"] = "high"
    poison = [b"{not json", json.dumps(bad_level).encode(), b'{"operation": "create", "client_id": "org1"}']
    good = sample_mutation("org1", "Hostname|internet|a.example", 2)
    caplog.set_level(logging.INFO, logger="katsched.intake")
    with running(consumer_for(queue_name, mutation_handler(Planner()), workers=1)) as consumer:
        broker.publish(queue_name, *poison, good)
        wait_until(lambda: len(planned) == 1 and consumer.stats.dead_lettered == 3, "all four are settled")
        assert consumer.stats.acked == 1
    assert planned[0].primary_key == "Hostname|internet|a.example"
    dead = broker.take_all(f"{queue_name}.dead")
    assert [body for _, body in dead] == poison
    reasons = [headers[REASON_HEADER] for headers, _ in dead]
    assert reasons[0].startswith("invalid JSON:")
    assert reasons[1].startswith("value.scan_profile.level:")
    assert reasons[2].startswith("primary_key: Field required")
    assert all(headers[QUEUE_HEADER] == queue_name and DEAD_AT_HEADER in headers for headers, _ in dead)
    assert f'message_dead_lettered queue={queue_name} reason="invalid JSON:' in caplog.text
    assert broker.ready(queue_name) == 0


def test_a_handler_bug_dead_letters_the_message_rather_than_losing_or_looping_it(
    broker: Broker, queue_name: str
) -> None:
    def buggy(_body: bytes) -> None:
        raise KeyError("scan_profile")

    with running(consumer_for(queue_name, buggy)) as consumer:
        broker.publish(queue_name, b'{"n": 1}')
        wait_until(lambda: consumer.stats.dead_lettered == 1, "the message is dead-lettered")
    [(headers, _)] = broker.take_all(f"{queue_name}.dead")
    assert headers[REASON_HEADER] == "handler failed: KeyError: 'scan_profile'"


def test_a_sql_bug_and_a_refused_value_are_dead_lettered_not_requeued(
    broker: Broker, queue_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'bug.db'}")

    def handle(body: bytes) -> None:
        if json.loads(body)["n"] == 1:  # the database refuses one of the message's values
            raise InvalidValue("database error: string or blob too big")
        with write(engine) as connection:  # a deliberate bug: a statement that does not compile
            connection.execute(text("SELEC 1"))

    caplog.set_level(logging.INFO, logger="katsched.intake")
    with running(consumer_for(queue_name, handle, workers=1)) as consumer:
        broker.publish(queue_name, *numbered(2))
        wait_until(lambda: consumer.stats.dead_lettered == 2, "both are dead-lettered")
        assert consumer.stats.requeued == 0
    engine.dispose()
    reasons = {
        json.loads(body)["n"]: headers[REASON_HEADER]
        for headers, body in broker.take_all(f"{queue_name}.dead")
    }
    assert reasons[1] == "database error: string or blob too big"
    assert reasons[0].startswith('handler failed: OperationalError: (sqlite3.OperationalError) near "SELEC"')
    [failed] = [r for r in caplog.records if r.getMessage().startswith("message_failed")]
    assert failed.levelno == logging.ERROR and failed.exc_info is not None  # only the bug has a traceback


@pytest.mark.parametrize(
    "error", [ServiceUnavailable("katalogus: 500"), StorageUnavailable("database is locked")]
)
def test_a_transient_failure_is_requeued_with_growing_backoff_until_it_recovers(
    broker: Broker, queue_name: str, store: DedupStore, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    failures = iter(range(4))
    commit = committing(store)

    def flaky(body: bytes) -> None:
        if next(failures, None) is not None:
            raise error
        commit(body)

    caplog.set_level(logging.INFO, logger="katsched.intake")
    backoff = Backoff(initial=0.02, maximum=0.05, jitter=0.0)
    with running(consumer_for(queue_name, flaky, requeue_backoff=backoff)) as consumer:
        broker.publish(queue_name, *numbered(1))
        wait_until(lambda: consumer.stats.acked == 1, "the message is processed after recovering")
        assert consumer.stats.requeued == 4
        assert consumer.stats.dead_lettered == 0
    assert store.commits == {"task-0": 1}
    delays = [
        record.getMessage().split("delay=")[1].split()[0]
        for record in caplog.records
        if "requeued" in record.getMessage()
    ]
    assert delays == ["0.02", "0.04", "0.05", "0.05"]  # growing, bounded
    assert broker.ready(queue_name) == 0


def test_every_message_becomes_one_task_when_the_connection_is_killed_mid_stream(
    broker: Broker, queue_name: str, store: DedupStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="katsched.intake")
    name = f"katsched {queue_name}"
    broker.publish(queue_name, *numbered(1000))
    first = HoldAt(committing(store), 200)
    second = HoldAt(first, 600)
    with running(consumer_for(queue_name, second, connection_name=name, prefetch=50)) as consumer:
        for hold in (first, second):
            wait_until(hold.reached.is_set, "the stream is held mid-way, work committed but not acknowledged")
            assert broker.kill_connection(name) == 1
            hold.release()
            wait_until(lambda: consumer.connected, "the consumer reconnects")
        wait_until(lambda: store.tasks == 1000, "all 1000 messages are processed")
        wait_until(
            lambda: broker.ready(queue_name) == 0 and broker.unacknowledged(queue_name) == 0, "all acked"
        )
        assert consumer.stats.reconnects == 2
        assert consumer.stats.abandoned > 0  # outcomes whose connection had gone
    assert set(store.commits) == {f"task-{n}" for n in range(1000)}
    assert sum(store.commits.values()) > 1000  # the unacknowledged ones came again; dedup absorbed them
    assert f"consumer_reconnected queue={queue_name}" in caplog.text
    assert f"consumer_disconnected queue={queue_name}" in caplog.text


def test_the_consumer_survives_a_broker_that_is_away_and_comes_back(
    broker: Broker, queue_name: str, store: DedupStore
) -> None:
    proxy = TcpProxy()  # not started: the broker is "away" when the consumer starts
    consumer = consumer_for(queue_name, committing(store), url=proxy.url())
    thread = consumer.start()
    try:
        wait_until(
            lambda: consumer.state is ConsumerState.DISCONNECTED, "the consumer reports it is disconnected"
        )
        assert not consumer.connected
        assert consumer.last_error is not None
        proxy.start()
        wait_until(lambda: consumer.connected, "the consumer connects once the broker is back")
        broker.publish(queue_name, *numbered(1))
        wait_until(lambda: store.tasks == 1, "the first message is processed")
        proxy.stop()
        wait_until(lambda: not consumer.connected, "the consumer notices the broker went away")
        assert thread.is_alive()
        broker.publish(queue_name, *numbered(1, start=1))
        proxy.start()
        wait_until(lambda: store.tasks == 2, "the message published meanwhile is processed")
        assert consumer.stats.reconnects == 1
    finally:
        consumer.stop(timeout=10)
        proxy.stop()
    assert not thread.is_alive()
    assert consumer.state is ConsumerState.STOPPED


def test_a_queue_declared_with_other_arguments_is_reported_and_left_alone(
    broker: Broker, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    broker.declare(queue_name, durable=False)
    broker.publish(queue_name, b'{"n": 1}', declare=False)
    consumer = consumer_for(queue_name, lambda _body: None)
    thread = consumer.start()
    try:
        wait_until(lambda: consumer.state is ConsumerState.MISCONFIGURED, "the mismatch is reported")
        assert consumer.last_error is not None
        assert f"queue {queue_name} exists with other arguments" in consumer.last_error
        assert "inequivalent arg 'durable'" in consumer.last_error
        assert "consumer_queue_mismatch" in caplog.text
        assert thread.is_alive()
    finally:
        consumer.stop(timeout=10)
    assert broker.ready(queue_name) == 1  # never deleted, message kept


def test_stop_finishes_the_message_in_hand_and_leaves_the_rest_for_the_next_run(
    broker: Broker, queue_name: str, store: DedupStore
) -> None:
    started, release = threading.Event(), threading.Event()
    commit = committing(store)

    def first_is_slow(body: bytes) -> None:
        if not started.is_set():
            started.set()
            assert release.wait(DEADLINE_SECONDS)
        commit(body)

    broker.publish(queue_name, *numbered(50))
    consumer = consumer_for(queue_name, first_is_slow, workers=1, prefetch=10)
    consumer.start()
    wait_until(started.is_set, "the first message is being handled")
    stopping = threading.Thread(target=consumer.stop, kwargs={"timeout": 20})
    stopping.start()
    wait_until(lambda: consumer.state is ConsumerState.STOPPING, "the consumer is stopping")
    release.set()
    stopping.join(DEADLINE_SECONDS)
    assert consumer.state is ConsumerState.STOPPED
    assert store.commits == {"task-0": 1}
    assert consumer.stats.acked == 1
    assert broker.ready(queue_name) == 49
    with running(consumer_for(queue_name, commit)) as consumer:
        wait_until(lambda: store.tasks == 50, "the next run processes the other 49")
    assert max(store.commits.values()) == 1


def test_stop_returns_promptly_while_a_failing_message_backs_off(broker: Broker, queue_name: str) -> None:
    def down(_body: bytes) -> None:
        raise ServiceUnavailable("octopoes: connection refused")

    slow = Backoff(initial=30.0, maximum=60.0)
    consumer = consumer_for(queue_name, down, requeue_backoff=slow)
    consumer.start()
    wait_until(lambda: consumer.connected, "connected")
    broker.publish(queue_name, *numbered(3))
    wait_until(lambda: consumer.stats.consumed == 3, "the messages are delivered")
    consumer.stop(timeout=5)
    assert consumer.state is ConsumerState.STOPPED
    assert broker.ready(queue_name) == 3


def test_heartbeats_are_answered_while_a_handler_is_slow(
    broker: Broker, queue_name: str, store: DedupStore
) -> None:
    commit = committing(store)
    hold = threading.Event()

    def three_seconds(body: bytes) -> None:
        hold.wait(3.0)  # a planner waiting on a slow service, longer than two heartbeat intervals
        commit(body)

    consumer = consumer_for(queue_name, three_seconds, url=f"{AMQP_URL}?heartbeat=1")
    with running(consumer) as consumer:
        broker.publish(queue_name, *numbered(1))
        wait_until(lambda: consumer.stats.acked == 1, "the slow message is acked")
        assert consumer.stats.reconnects == 0
        assert consumer.connected


DEADLINE_SECONDS = 30.0


class BatchPlanner:
    """Plans decoded numbers together; records the size of each call; refuses the numbers in `bugs`."""

    def __init__(self, store: DedupStore, bugs: frozenset[int] = frozenset()) -> None:
        self.store = store
        self.bugs = bugs
        self.sizes: list[int] = []
        self.go = threading.Event()  # the first call waits for it, so that messages pile up meanwhile
        self.go.set()

    @staticmethod
    def decode(body: bytes) -> int:
        try:
            return int(json.loads(body)["n"])
        except (ValueError, KeyError, TypeError) as error:
            raise MessageError(f"n: {error!r}") from None

    def plan(self, numbers: Sequence[int]) -> None:
        assert self.go.wait(DEADLINE_SECONDS)
        self.sizes.append(len(numbers))
        if self.bugs.intersection(numbers):
            raise ZeroDivisionError("a bug in the planner")
        for n in numbers:
            self.store.commit(f"task-{n}")


def test_a_batch_plans_waiting_messages_together_and_dead_letters_poison_alone(
    broker: Broker, queue_name: str, store: DedupStore
) -> None:
    planner = BatchPlanner(store)
    planner.go.clear()
    broker.publish(queue_name, *numbered(100), b'{"n": "x"}', *numbered(100, start=100))
    batch = Batch(decode=planner.decode, plan=planner.plan, size=25)
    with running(consumer_for(queue_name, batch, workers=1, prefetch=100)) as consumer:
        wait_until(lambda: consumer.stats.consumed == 100, "a prefetch's worth is delivered")
        planner.go.set()
        wait_until(
            lambda: consumer.stats.acked == 200 and consumer.stats.dead_lettered == 1, "all are settled"
        )
    assert store.tasks == 200 and max(store.commits.values()) == 1
    assert max(planner.sizes) == 25 and sum(planner.sizes) == 200
    [(headers, body)] = broker.take_all(f"{queue_name}.dead")
    assert body == b'{"n": "x"}' and headers[REASON_HEADER].startswith("n: ValueError")


def test_a_batch_that_fails_on_a_bug_is_retried_one_by_one_to_dead_letter_only_the_culprit(
    broker: Broker, queue_name: str, store: DedupStore
) -> None:
    planner = BatchPlanner(store, bugs=frozenset({7}))
    broker.publish(queue_name, *numbered(20))
    batch = Batch(decode=planner.decode, plan=planner.plan, size=20)
    with running(consumer_for(queue_name, batch, workers=1, prefetch=20)) as consumer:
        wait_until(
            lambda: consumer.stats.acked == 19 and consumer.stats.dead_lettered == 1, "all are settled"
        )
    assert set(store.commits) == {f"task-{n}" for n in range(20) if n != 7}
    [(headers, body)] = broker.take_all(f"{queue_name}.dead")
    assert json.loads(body) == {"n": 7}
    assert headers[REASON_HEADER] == "handler failed: ZeroDivisionError: a bug in the planner"


def test_a_batch_that_fails_transiently_is_requeued_whole_and_planned_once_it_recovers(
    broker: Broker, queue_name: str, store: DedupStore
) -> None:
    planner = BatchPlanner(store)
    failures = iter(range(2))

    def flaky(numbers: Sequence[int]) -> None:
        if next(failures, None) is not None:
            raise ServiceUnavailable("bytes: 503")
        planner.plan(numbers)

    broker.publish(queue_name, *numbered(30))
    batch = Batch(decode=planner.decode, plan=flaky, size=10)
    with running(consumer_for(queue_name, batch, workers=2, prefetch=30)) as consumer:
        wait_until(lambda: store.tasks == 30 and consumer.stats.acked == 30, "all are planned")
        assert consumer.stats.requeued >= 2
    assert max(store.commits.values()) == 1


def test_a_batch_is_acked_with_one_frame_that_never_covers_a_message_still_in_hand(
    broker: Broker, queue_name: str, store: DedupStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AMQP's `multiple` acks every older delivery too: only an unbroken run of the oldest is acked so."""
    frames: list[tuple[int, bool]] = []
    basic_ack = BlockingChannel.basic_ack

    def spy(channel: BlockingChannel, delivery_tag: int = 0, multiple: bool = False) -> None:
        frames.append((delivery_tag, multiple))
        basic_ack(channel, delivery_tag=delivery_tag, multiple=multiple)

    monkeypatch.setattr(BlockingChannel, "basic_ack", spy)
    planner = BatchPlanner(store)
    held: list[int] = []

    def holding_the_oldest(numbers: Sequence[int]) -> None:
        if 0 in numbers:
            held.extend(numbers)
            planner.plan(numbers)  # waits for `go`
        else:
            for n in numbers:
                store.commit(f"task-{n}")

    planner.go.clear()
    broker.publish(queue_name, *numbered(30))
    batch = Batch(decode=planner.decode, plan=holding_the_oldest, size=10)
    with running(consumer_for(queue_name, batch, workers=2, prefetch=30)) as consumer:
        wait_until(
            lambda: held and consumer.stats.acked == 30 - len(held), "all but the held batch are acked"
        )
        assert broker.unacknowledged(queue_name) == len(held)  # not acked along with younger ones
        assert not any(multiple for _, multiple in frames)
        planner.go.set()
        wait_until(lambda: consumer.stats.acked == 30, "the held batch is acked")
    assert set(store.commits) == {f"task-{n}" for n in range(30)}
    assert broker.ready(queue_name) == 0 and broker.unacknowledged(queue_name) == 0
    # The held deliveries were the oldest unsettled ones (delivery tag = n + 1): acked in one frame.
    assert frames[-1] == ((max(held) + 1, True) if len(held) > 1 else (1, False))


def test_a_queue_deleted_under_the_consumer_is_declared_again_and_consumed(
    broker: Broker, queue_name: str, store: DedupStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="katsched.intake")
    with running(consumer_for(queue_name, committing(store))) as consumer:
        broker.delete(queue_name)
        wait_until(lambda: consumer.stats.reconnects == 1 and consumer.connected, "the consumer starts over")
        broker.publish(queue_name, *numbered(1), declare=False)
        wait_until(lambda: store.tasks == 1, "a message published to the new queue is processed")
    assert "consumer cancelled by the broker" in caplog.text
