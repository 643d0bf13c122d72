"""The normalizer planner (SPEC §3): a raw file received → one task per enabled normalizer of its mime types.

No schedules: a raw file is normalised once. Ranked by when the boefje that produced it ended, so raw data is
normalised in the order it was made.
"""

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from katsched.clock import Clock
from katsched.core.hashing import task_hash
from katsched.core.models import Normalizer, NormalizerTask, Plugin, RawDataReceivedEvent
from katsched.core.ports import (
    DecisionLog,
    DecisionRecord,
    PluginCatalog,
    PushOutcome,
    PushResult,
    TaskDraft,
    TaskStore,
)
from katsched.core.ranking import RankFacts, ranker_named
from katsched.core.rules import Action, Decision, normalizer_permission
from katsched.schedulers.common import (
    ALREADY_PLANNED,
    ERROR_MIME_TYPE,
    ForgetDecisions,
    Planned,
    deferring,
    push_and_record,
)
from katsched.schedulers.summary import PlanSummary
from katsched.schedulers.unplanned import NO_NORMALIZER, UnplannedEvents

logger = logging.getLogger("katsched.schedulers")

SCHEDULER = "normalizer"


@dataclass(frozen=True)
class NormalizerPlannerSettings:
    ranker: str = "ended_at"

    def __post_init__(self) -> None:
        ranker_named(self.ranker)


@dataclass(frozen=True)
class NormalizerVerdict:
    """What the planner decided about one normalizer and a raw file (`plugin` None: about the whole file)."""

    plugin: Plugin | None
    task: NormalizerTask | None
    hash: str
    decision: Decision

    @property
    def plugin_id(self) -> str:
        return self.plugin.id if self.plugin is not None else ""


def normalizer_task(plugin: Plugin, event: RawDataReceivedEvent) -> NormalizerTask:
    normalizer = Normalizer(id=plugin.id, name=plugin.name, version=plugin.version)
    return NormalizerTask(normalizer=normalizer, raw_data=event.raw_data)


def decide_normalizer(plugin: Plugin, task: NormalizerTask, planned_before: set[str]) -> NormalizerVerdict:
    key = task_hash(task)
    decision = normalizer_permission(plugin)
    if decision.runs and key in planned_before:
        decision = Decision(Action.SKIP, ALREADY_PLANNED)
    return NormalizerVerdict(plugin, task, key, decision)


def normalizer_record(
    event: RawDataReceivedEvent,
    verdict: NormalizerVerdict,
    outcomes: Mapping[uuid.UUID | None, PushOutcome],
    now: datetime,
) -> DecisionRecord:
    """The verdict as the planner's last decision about (organisation, raw file, normalizer), with the raw
    file itself so that `katsched explain --raw` can assess it again."""
    action, reason, task_id = verdict.decision.action.value, verdict.decision.reason, None
    outcome = outcomes.get(verdict.task.id) if verdict.task is not None else None
    if outcome is not None and outcome.result is PushResult.PUSHED:
        task_id = outcome.task.id if outcome.task is not None else verdict.task.id if verdict.task else None
    elif outcome is not None:
        action, reason = Action.SKIP.value, outcome.result.value
    raw = event.raw_data.model_dump(mode="json")
    subject = str(event.raw_data.id)
    org = event.organization
    return DecisionRecord(org, subject, verdict.plugin_id, SCHEDULER, action, reason, now, task_id, raw)


class NormalizerPlanner:
    def __init__(
        self,
        *,
        tasks: TaskStore,
        catalog: PluginCatalog,
        clock: Clock,
        settings: NormalizerPlannerSettings | None = None,
        decisions: DecisionLog | None = None,
        unplanned: UnplannedEvents | None = None,
    ) -> None:
        self._unplanned = unplanned or UnplannedEvents(clock)
        self._tasks = tasks
        self._decisions = decisions or ForgetDecisions()
        self._catalog = catalog
        self._clock = clock
        self._rank = ranker_named((settings or NormalizerPlannerSettings()).ranker)

    def plan_for_raw_file(self, event: RawDataReceivedEvent) -> PlanSummary:
        """One task per enabled normalizer that takes any of the file's mime types. A file that records a
        boefje's failure (an `error/…` mime type) is not normalised, as in the original. A task that already
        exists for this very file (a redelivered message) is not pushed again."""
        summary = PlanSummary("normalizer.raw_file")
        with deferring(summary.planner, event.organization):
            self._apply(event, self.assess(event), summary)
        if not summary.created:
            reason = max(summary.skipped, key=summary.skipped.__getitem__, default=NO_NORMALIZER)
            self._unplanned.report(event.organization, reason, "raw_file")
        return summary

    # -- gather → decide (pure) → apply ----------------------------------------------------------------------

    def assess(self, event: RawDataReceivedEvent) -> list[NormalizerVerdict]:
        """Gather and decide, writing nothing: a verdict per normalizer of the file's mime types (or one for
        the whole file when it records a failure), as `plan_for_raw_file` decides. Explain calls this too."""
        mime_types = [mime.get("value", "") for mime in event.raw_data.mime_types]
        if any(mime.startswith("error/") for mime in mime_types):
            return [NormalizerVerdict(None, None, "", Decision(Action.SKIP, ERROR_MIME_TYPE))]
        normalizers = self._normalizers(event.organization, mime_types)
        tasks = [normalizer_task(plugin, event) for plugin in normalizers]
        planned_before = self._tasks.raw_file_planned({task_hash(t) for t in tasks}, event.raw_data.id)
        return [decide_normalizer(p, t, planned_before) for p, t in zip(normalizers, tasks, strict=True)]

    def _apply(
        self, event: RawDataReceivedEvent, verdicts: Sequence[NormalizerVerdict], summary: PlanSummary
    ) -> None:
        now = self._clock.now()
        priority = self._rank(RankFacts(ended_at=event.raw_data.boefje_meta.ended_at, created_at=now), now)
        planned: list[Planned] = []
        for verdict in verdicts:
            if verdict.decision.runs and verdict.task is not None:
                data = verdict.task.model_dump(mode="json")
                draft = TaskDraft(SCHEDULER, event.organization, priority, data, verdict.task.id)
                planned.append(Planned(draft, verdict.decision.reason))
                continue
            summary.skip(verdict.decision.reason)
            logger.debug(
                "task_skipped scheduler=normalizer org=%s normalizer=%s raw_data_id=%s reason=%s",
                event.organization, verdict.plugin_id or "-", event.raw_data.id, verdict.decision.reason,
            )  # fmt: skip

        def decisions_of(outcomes: Sequence[PushOutcome]) -> list[DecisionRecord]:
            by_id = {outcome.draft.id: outcome for outcome in outcomes}
            return [normalizer_record(event, verdict, by_id, now) for verdict in verdicts]

        push_and_record(self._tasks, planned, summary, decisions_of, self._decisions)

    def _normalizers(self, organisation: str, mime_types: Sequence[str]) -> list[Plugin]:
        """The organisation's normalizers for any of the mime types, each once, in order of first mention."""
        found: dict[str, Plugin] = {}
        for mime_type in mime_types:
            for plugin in self._catalog.normalizers_for_mime(organisation, mime_type):
                found.setdefault(plugin.id, plugin)
        return list(found.values())
