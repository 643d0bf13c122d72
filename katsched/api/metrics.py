"""Prometheus metrics of the API process, in a registry of its own (not the global default one).

Queue sizes and task counts are read from the database when scraped, so they are never stale and need no
collector thread. The original's names (`scheduler_qsize`, `scheduler_task_status_counts`) are kept for
existing dashboards; the per-organisation series are new.
"""

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from katsched.core.models import SchedulerKind, TaskStatus
from katsched.core.ports import TaskQueue
from katsched.errors import StorageError

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
Counts = list[tuple[str, str, TaskStatus, int]]


class QueueCollector(Collector):
    """Task counts per scheduler, organisation and status, from one grouped query per scrape."""

    def __init__(self, queue: TaskQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("scheduler_database_up", "1 if the task database answered this scrape.")
        try:
            counts = self.queue.counts()
        except StorageError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from scheduler_families(counts)
        yield from organisation_families(counts)


def scheduler_families(counts: Counts) -> Iterator[Metric]:
    qsize = GaugeMetricFamily("scheduler_qsize", "Tasks queued.", labels=["scheduler_id"])
    by_status = GaugeMetricFamily(
        "scheduler_task_status_counts", "Tasks per status, all time.", labels=["scheduler_id", "status"]
    )
    totals: dict[tuple[str, TaskStatus], int] = defaultdict(int)
    for scheduler_id, _organisation, status, number in counts:
        totals[scheduler_id, status] += number
    schedulers = sorted({kind.value for kind in SchedulerKind} | {key[0] for key in totals})
    for scheduler_id in schedulers:
        qsize.add_metric([scheduler_id], totals[scheduler_id, TaskStatus.QUEUED])
        for status in TaskStatus:
            by_status.add_metric([scheduler_id, status.value], totals[scheduler_id, status])
    yield qsize
    yield by_status


def organisation_families(counts: Counts) -> Iterator[Metric]:
    labels = ["scheduler_id", "organisation"]
    qsize = GaugeMetricFamily("scheduler_organisation_qsize", "Tasks queued per organisation.", labels=labels)
    by_status = GaugeMetricFamily(
        "scheduler_organisation_task_status_counts",
        "Tasks per organisation and status, all time.",
        labels=[*labels, "status"],
    )
    queued: dict[tuple[str, str], int] = defaultdict(int)
    for scheduler_id, organisation, status, number in counts:
        by_status.add_metric([scheduler_id, organisation, status.value], number)
        queued[scheduler_id, organisation] += number if status is TaskStatus.QUEUED else 0
    for (scheduler_id, organisation), number in sorted(queued.items()):
        qsize.add_metric([scheduler_id, organisation], number)
    yield qsize
    yield by_status


class ApiMetrics:
    def __init__(self, queue: TaskQueue, version: str) -> None:
        self.registry = CollectorRegistry()
        Info("katsched", "The katsched version serving this API.", registry=self.registry).info(
            {"version": version}
        )
        self.pushed = Counter(
            "scheduler_tasks_pushed",
            "Tasks queued through the API.",
            ["scheduler_id"],
            registry=self.registry,
        )
        self.push_refused = Counter(
            "scheduler_pushes_refused",
            "Pushes refused: conflict, full, invalid.",
            ["scheduler_id", "reason"],
            registry=self.registry,
        )
        self.popped = Counter(
            "scheduler_tasks_popped", "Tasks handed out by pops.", ["scheduler_id"], registry=self.registry
        )
        self.pops = Counter(
            "scheduler_pops", "Pop requests, empty or not.", ["scheduler_id"], registry=self.registry
        )
        self.latency = Histogram(
            "scheduler_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(QueueCollector(queue))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
