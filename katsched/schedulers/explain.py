"""Why (not)? The planners' own gather and decide steps, run for one object or raw file, writing nothing.

`explain_object` asks the boefje planner for the candidates a mutation of the object would make and for its
verdicts on them (`BoefjePlanner.candidates_for_object`, `.assess`): the same rules on the same facts from the
same ports, so the explanation cannot drift from what the planner does. Then it adds the facts an operator
asks about (schedule, last decision, deduplication twins). A KAT service that is down is named in
`unavailable`, and the answer is as complete as the other services allow.
"""

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from katsched.clock import Clock
from katsched.core.explain import (
    DEFERRED,
    UNKNOWN,
    BoefjeExplanation,
    Explanation,
    LastDecision,
    LastRun,
    NormalizerExplanation,
    Runner,
    ScheduleFacts,
    TaskRef,
    boefje_verdict,
    normalizer_verdict,
)
from katsched.core.models import (
    OOI,
    MutationOperation,
    Plugin,
    RawData,
    RawDataReceivedEvent,
    Schedule,
    Task,
    TaskStatus,
)
from katsched.core.ports import (
    DecisionLog,
    DecisionRecord,
    ObjectGraph,
    PluginCatalog,
    ScheduleStore,
    TaskStore,
)
from katsched.core.rules import Action, Decision, Reason
from katsched.core.transitions import TERMINAL
from katsched.errors import NotFound, ServiceError
from katsched.schedulers.boefje import BoefjePlanner
from katsched.schedulers.boefje_plan import Candidate, Verdict, candidate, eligible_at, precheck
from katsched.schedulers.normalizer import NormalizerPlanner


class _Outages:
    """The services found down while explaining, by name, with their error."""

    def __init__(self) -> None:
        self.down: dict[str, str] = {}

    @contextmanager
    def asking(self, service: str) -> Iterator[None]:
        try:
            yield
        except ServiceError as exc:
            self.down[service] = str(exc)


class Explainer:
    def __init__(
        self,
        *,
        boefjes: BoefjePlanner,
        normalizers: NormalizerPlanner,
        catalog: PluginCatalog,
        objects: ObjectGraph,
        tasks: TaskStore,
        schedules: ScheduleStore,
        decisions: DecisionLog,
        clock: Clock,
    ) -> None:
        self._boefjes = boefjes
        self._normalizers = normalizers
        self._catalog = catalog
        self._objects = objects
        self._tasks = tasks
        self._schedules = schedules
        self._decisions = decisions
        self._clock = clock

    # -- boefjes -------------------------------------------------------------------------------------------

    def explain_object(
        self,
        organisation: str,
        reference: str,
        boefje_id: str | None = None,
        operation: MutationOperation = MutationOperation.UPDATE,
    ) -> Explanation:
        """The decision each boefje of the organisation that takes the object (or only `boefje_id`) would get
        now from a mutation `operation` of the object, with the facts behind it."""
        now, outages = self._clock.now(), _Outages()
        ooi: OOI | None = None
        with outages.asking("octopoes"):
            ooi = self._objects.get_object(organisation, reference, valid_time=now)
            if ooi is None:
                raise NotFound(f"object {reference!r} not found in organisation {organisation!r}")
        object_type = ooi.object_type if ooi is not None else reference.split("|", 1)[0]
        explanation = Explanation(
            organisation=organisation,
            taken_at=now,
            ooi=reference,
            object_type=object_type,
            object_scan_level=ooi.scan_profile.level if ooi and ooi.scan_profile else None,
            operation=operation.value,
        )
        verdicts: list[Verdict] = []
        with outages.asking("katalogus"):
            verdicts = self._verdicts(
                organisation, reference, object_type, ooi, boefje_id, operation, outages
            )
        entries = self._boefje_entries(explanation, verdicts, outages, now)
        return explanation.model_copy(update={"boefjes": entries, "unavailable": outages.down})

    def _verdicts(
        self,
        organisation: str,
        reference: str,
        object_type: str,
        ooi: OOI | None,
        boefje_id: str | None,
        operation: MutationOperation,
        outages: _Outages,
    ) -> list[Verdict]:
        """The planner's verdicts; a named boefje the mutation would not consider gets NOT_CONSUMED."""
        if ooi is None:  # Octopoes is down: the scan level, hence the decision, cannot be told
            unknown = self._catalog.boefjes_consuming(organisation, object_type)
            plugins = [p for p in unknown if boefje_id in (None, p.id)]
            refs = [
                candidate(p, organisation, None, input_ooi=reference, operation=operation) for p in plugins
            ]
            latest = self._tasks.latest_by_hash("boefje", {c.hash for c in refs})
            return [_unknown_verdict(c, latest.get(c.hash)) for c in refs]
        candidates = self._boefjes.candidates_for_object(organisation, ooi, operation)
        if boefje_id is not None:
            candidates = [c for c in candidates if c.plugin.id == boefje_id]
            if not candidates:
                return [self._not_considered(organisation, ooi, boefje_id, operation)]
        try:
            return self._boefjes.assess(candidates, self._clock.now())
        except ServiceError as exc:  # only Bytes is asked while assessing
            outages.down["bytes"] = str(exc)
            latest = self._tasks.latest_by_hash("boefje", {c.hash for c in candidates})
            return [_deferred_verdict(c, latest.get(c.hash)) for c in candidates]

    def _not_considered(
        self, organisation: str, ooi: OOI, boefje_id: str, operation: MutationOperation
    ) -> Verdict:
        plugin = self._catalog.plugin(organisation, boefje_id)
        if plugin is None or plugin.type != "boefje":
            raise NotFound(f"boefje {boefje_id!r} not found in organisation {organisation!r}")
        item = candidate(plugin, organisation, ooi, operation=operation)
        return Verdict(item, Decision(Action.SKIP, Reason.NOT_CONSUMED), None)

    def _boefje_entries(
        self, explanation: Explanation, verdicts: list[Verdict], outages: _Outages, now: datetime
    ) -> list[BoefjeExplanation]:
        if not verdicts:
            return []
        schedules = self._schedules.by_hashes({v.candidate.hash for v in verdicts})
        last = self._decisions.last(explanation.organisation, explanation.ooi or "")
        entries = []
        for verdict in verdicts:
            twins: list[str] = []
            if verdict.candidate.ooi is not None and precheck(verdict.candidate) is None:
                with outages.asking("katalogus"):
                    twins = [t.organisation for t in self._boefjes.duplicate_twins(verdict.candidate, now)]
            decided = last.get(verdict.candidate.plugin.id)
            schedule = schedules.get(verdict.candidate.hash)
            entries.append(self._boefje_entry(explanation, verdict, schedule, decided, twins, outages))
        return entries

    def _boefje_entry(
        self,
        explanation: Explanation,
        verdict: Verdict,
        schedule: Schedule | None,
        decided: DecisionRecord | None,
        twins: list[str],
        outages: _Outages,
    ) -> BoefjeExplanation:
        item, plugin = verdict.candidate, verdict.candidate.plugin
        settings = self._boefjes.settings
        last_run = _last_run(verdict)
        eligible = eligible_at(last_run.at, plugin, settings.grace_period) if last_run.at else None
        active = self._active_task(verdict.latest)
        schedule_facts = _schedule_facts(schedule, plugin, decided)
        kind, line = boefje_verdict(
            verdict.decision.reason,
            object_level=explanation.object_scan_level,
            plugin_level=plugin.scan_level,
            run_on=list(plugin.run_on or []),
            operation=explanation.operation,
            object_type=explanation.object_type,
            eligible_at=eligible,
            schedule=schedule_facts,
            active=active,
            unavailable=", ".join(sorted(outages.down)) or None,
        )
        return BoefjeExplanation(
            boefje=plugin.id,
            verdict=line,
            kind=kind,
            reason=verdict.decision.reason,
            enabled=plugin.enabled,
            plugin_scan_level=plugin.scan_level,
            object_scan_level=explanation.object_scan_level,
            run_on=list(plugin.run_on or []),
            interval_minutes=plugin.interval,
            grace_period_seconds=settings.grace_period.total_seconds(),
            last_run=last_run,
            eligible_at=eligible,
            active_task=active,
            schedule=schedule_facts,
            twins=twins,
            last_decision=_last_decision(decided),
            task_hash=item.hash,
        )

    def _active_task(self, latest: Task | None) -> TaskRef | None:
        """The task of this work that is not finished, with the runner holding it if one popped it."""
        if latest is None or latest.status in TERMINAL:
            return None
        held = latest.status in (TaskStatus.DISPATCHED, TaskStatus.RUNNING)
        runner = self._tasks.popped_by(latest.id) if held else None
        popped_by = None
        if runner is not None and runner.at is not None:
            popped_by = Runner(address=runner.address, agent=runner.agent, at=runner.at)
        return _task_ref(latest, popped_by)

    # -- normalizers ---------------------------------------------------------------------------------------

    def explain_raw_file(self, organisation: str, raw_data_id: uuid.UUID) -> Explanation:
        """Which normalizers take the raw file's mime types, which are enabled, and what became of each. The
        raw file is known from its tasks or from the planner's last decisions about it."""
        now, outages = self._clock.now(), _Outages()
        tasks = self._tasks.tasks_for_raw_file(organisation, raw_data_id)
        last = self._decisions.last(organisation, str(raw_data_id))
        raw = _raw_file(tasks, last.values())
        if raw is None:
            raise NotFound(
                f"raw file {raw_data_id} of organisation {organisation!r}: no task or decision records it "
                "(never received, or pruned)"
            )
        event = RawDataReceivedEvent(created_at=now, organization=organisation, raw_data=raw)
        verdicts = []
        with outages.asking("katalogus"):
            verdicts = self._normalizers.assess(event)
        by_normalizer: dict[str, Task] = {}
        for task in tasks:  # newest first: keep each normalizer's newest
            by_normalizer.setdefault(str(task.data.get("normalizer", {}).get("id")), task)
        entries = []
        for verdict in verdicts:
            task_ref = _task_ref(by_normalizer.get(verdict.plugin_id))
            kind, line = normalizer_verdict(verdict.decision.reason, task_ref)
            entries.append(
                NormalizerExplanation(
                    normalizer=verdict.plugin_id or "*",
                    verdict=line,
                    kind=kind,
                    reason=verdict.decision.reason,
                    enabled=verdict.plugin.enabled if verdict.plugin is not None else None,
                    task=task_ref,
                    last_decision=_last_decision(last.get(verdict.plugin_id)),
                )
            )
        return Explanation(
            organisation=organisation,
            taken_at=now,
            raw=raw_data_id,
            mime_types=[mime.get("value", "") for mime in raw.mime_types],
            normalizers=entries,
            unavailable=outages.down,
        )


# -- the facts, worded ---------------------------------------------------------------------------------------


def _unknown_verdict(item: Candidate, latest: Task | None) -> Verdict:
    refused = Decision(Action.SKIP, Reason.PLUGIN_DISABLED) if not item.plugin.enabled else None
    return Verdict(item, refused or Decision(Action.SKIP, UNKNOWN), None, latest)


def _deferred_verdict(item: Candidate, latest: Task | None) -> Verdict:
    return Verdict(item, precheck(item) or Decision(Action.SKIP, DEFERRED), None, latest)


def _task_ref(task: Task | None, popped_by: Runner | None = None) -> TaskRef | None:
    if task is None:
        return None
    return TaskRef(
        id=task.id,
        status=task.status,
        created_at=task.created_at,
        since=task.modified_at,
        popped_by=popped_by,
    )


def _last_run(verdict: Verdict) -> LastRun:
    ours, theirs = verdict.latest, verdict.bytes_run
    source = None
    if verdict.last_run_at is not None:
        source = "katsched" if ours is not None and ours.created_at == verdict.last_run_at else "bytes"
    return LastRun(
        at=verdict.last_run_at,
        source=source,
        task=_task_ref(ours),
        bytes_started_at=theirs.started_at if theirs else None,
        bytes_ended_at=theirs.ended_at if theirs else None,
    )


def _schedule_facts(
    schedule: Schedule | None, plugin: Plugin, decided: DecisionRecord | None
) -> ScheduleFacts | None:
    if schedule is None:
        return None
    disabled_by_planner = decided is not None and decided.action == Action.DISABLE.value
    return ScheduleFacts(
        id=schedule.id,
        enabled=schedule.enabled,
        cron=plugin.cron or schedule.schedule,
        interval_minutes=plugin.interval,
        deadline_at=schedule.deadline_at,
        disabled_reason=decided.reason if disabled_by_planner and not schedule.enabled and decided else None,
    )


def _last_decision(decided: DecisionRecord | None) -> LastDecision | None:
    if decided is None:
        return None
    return LastDecision(
        action=decided.action, reason=decided.reason, decided_at=decided.decided_at, task_id=decided.task_id
    )


def _raw_file(tasks: list[Task], decided: Iterable[DecisionRecord]) -> RawData | None:
    for task in tasks:
        raw = task.data.get("raw_data")
        if isinstance(raw, dict):
            return RawData.model_validate(raw)
    for record in decided:
        if record.subject_data is not None:
            return RawData.model_validate(dict(record.subject_data))
    return None
