"""The normalizer planner (SPEC §3): a raw file received → one task per enabled normalizer of its mime types.

No schedules: a raw file is normalised once. Ranked by when the boefje that produced it ended, so raw data is
normalised in the order it was made.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from katsched.clock import Clock
from katsched.core.hashing import task_hash
from katsched.core.models import Normalizer, NormalizerTask, Plugin, RawDataReceivedEvent
from katsched.core.ports import PluginCatalog, TaskDraft, TaskStore
from katsched.core.ranking import RankFacts, ranker_named
from katsched.core.rules import Reason, normalizer_permission
from katsched.schedulers.common import ALREADY_PLANNED, ERROR_MIME_TYPE, Planned, deferring, push_and_record
from katsched.schedulers.summary import PlanSummary

logger = logging.getLogger("katsched.schedulers")

SCHEDULER = "normalizer"
PERMITTED = Reason.PERMITTED.value


@dataclass(frozen=True)
class NormalizerPlannerSettings:
    ranker: str = "ended_at"

    def __post_init__(self) -> None:
        ranker_named(self.ranker)


class NormalizerPlanner:
    def __init__(
        self,
        *,
        tasks: TaskStore,
        catalog: PluginCatalog,
        clock: Clock,
        settings: NormalizerPlannerSettings | None = None,
    ) -> None:
        self._tasks = tasks
        self._catalog = catalog
        self._clock = clock
        self._rank = ranker_named((settings or NormalizerPlannerSettings()).ranker)

    def plan_for_raw_file(self, event: RawDataReceivedEvent) -> PlanSummary:
        """One task per enabled normalizer that takes any of the file's mime types. A file that records a
        boefje's failure (an `error/…` mime type) is not normalised, as in the original. A task that already
        exists for this very file (a redelivered message) is not pushed again."""
        summary = PlanSummary("normalizer.raw_file")
        with deferring(summary.planner, event.organization):
            mime_types = [mime.get("value", "") for mime in event.raw_data.mime_types]
            if any(mime.startswith("error/") for mime in mime_types):
                summary.skip(ERROR_MIME_TYPE)
                logger.debug("raw_file_skipped raw_data_id=%s reason=%s", event.raw_data.id, ERROR_MIME_TYPE)
            else:
                tasks = self._permitted_tasks(
                    event, self._normalizers(event.organization, mime_types), summary
                )
                self._push_new(event, tasks, summary)
        return summary

    def _push_new(
        self, event: RawDataReceivedEvent, tasks: Sequence[NormalizerTask], summary: PlanSummary
    ) -> None:
        by_hash = {task_hash(task): task for task in tasks}
        planned_before = self._tasks.raw_file_planned(by_hash.keys(), event.raw_data.id)
        summary.skip(ALREADY_PLANNED, len(planned_before))
        now = self._clock.now()
        priority = self._rank(RankFacts(ended_at=event.raw_data.boefje_meta.ended_at, created_at=now), now)
        planned = [
            Planned(
                TaskDraft(SCHEDULER, event.organization, priority, task.model_dump(mode="json"), task.id),
                PERMITTED,
            )
            for key, task in by_hash.items()
            if key not in planned_before
        ]
        push_and_record(self._tasks, planned, summary)

    def _normalizers(self, organisation: str, mime_types: Sequence[str]) -> list[Plugin]:
        """The organisation's normalizers for any of the mime types, each once, in order of first mention."""
        found: dict[str, Plugin] = {}
        for mime_type in mime_types:
            for plugin in self._catalog.normalizers_for_mime(organisation, mime_type):
                found.setdefault(plugin.id, plugin)
        return list(found.values())

    def _permitted_tasks(
        self, event: RawDataReceivedEvent, normalizers: Sequence[Plugin], summary: PlanSummary
    ) -> list[NormalizerTask]:
        tasks = []
        for plugin in normalizers:
            decision = normalizer_permission(plugin)
            if not decision.runs:
                summary.skip(decision.reason)
                logger.debug(
                    "task_skipped scheduler=normalizer org=%s normalizer=%s raw_data_id=%s reason=%s",
                    event.organization, plugin.id, event.raw_data.id, decision.reason,
                )  # fmt: skip
                continue
            normalizer = Normalizer(id=plugin.id, name=plugin.name, version=plugin.version)
            tasks.append(NormalizerTask(normalizer=normalizer, raw_data=event.raw_data))
        return tasks
