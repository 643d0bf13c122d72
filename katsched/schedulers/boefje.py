"""The boefje planner (SPEC §3): scan-profile mutations, newly enabled boefjes and due schedules → tasks.

Every trigger turns into candidates (a boefje, an object, an organisation) that share one pipeline: gather
the facts in bulk (newest task per hash; Bytes only where our history cannot tell), decide with the pure
rules, push the winners in one transaction, each with its schedule and next deadline.
"""

import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from pydantic import ValidationError

from katsched.clock import Clock
from katsched.core.deadlines import Uniform
from katsched.core.models import (
    OOI,
    BoefjeMeta,
    BoefjeTask,
    MutationOperation,
    Plugin,
    ScanProfileMutation,
    Schedule,
    Task,
)
from katsched.core.ports import (
    DecisionLog,
    DecisionRecord,
    DecisionsOf,
    NewRank,
    ObjectGraph,
    PluginCatalog,
    PushOutcome,
    PushResult,
    RawDataIndex,
    ScheduleClaim,
    ScheduleStore,
    SeenPlugins,
    TaskDraft,
    TaskStore,
)
from katsched.core.rules import Action, Reason, boefje_permission, schedule_still_valid
from katsched.schedulers.boefje_plan import (
    BoefjePlannerSettings,
    BytesKey,
    Candidate,
    MutationCandidates,
    Verdict,
    bytes_key,
    candidate,
    consumed_types,
    decide,
    decision_record,
    deferred_deadline,
    disabled_record,
    needs_bytes,
    precheck,
    rank,
    scan_levels,
    schedule_link,
)
from katsched.schedulers.common import (
    DEDUPLICATED,
    INVALID_DATA,
    NO_VALUE,
    ForgetDecisions,
    Planned,
    batched,
    claimed,
    concurrently,
    deferring,
    held_by,
    push_and_record,
)
from katsched.schedulers.dedup import DuplicateOrganisations
from katsched.schedulers.summary import PlanSummary
from katsched.schedulers.unplanned import NO_BOEFJE, UnplannedEvents

logger = logging.getLogger("katsched.schedulers")

SCHEDULER = "boefje"
RERANK_BATCHES_PER_RUN = 20


class _Lookups:
    """Plugins and objects asked once per planner run: many schedules share a boefje or an object. The
    organisation's plugins are read fresh, not from the catalogue's cache, so that a plugin disabled a
    moment ago disables its schedules instead of getting one more task: one Katalogus request per run."""

    def __init__(self, catalog: PluginCatalog, objects: ObjectGraph) -> None:
        self._catalog = catalog
        self._objects = objects
        self._plugins: dict[str, dict[str, Plugin]] = {}
        self._oois: dict[tuple[str, str], OOI | None] = {}

    def plugin(self, organisation: str, plugin_id: str) -> Plugin | None:
        if organisation not in self._plugins:
            fresh = self._catalog.fresh_plugins(organisation)
            self._plugins[organisation] = {plugin.id: plugin for plugin in fresh}
        return self._plugins[organisation].get(plugin_id)

    def ooi(self, organisation: str, reference: str, now: datetime) -> OOI | None:
        key = (organisation, reference)
        if key not in self._oois:
            self._oois[key] = self._objects.get_object(organisation, reference, valid_time=now)
        return self._oois[key]

    def prefetch_oois(self, keys: Sequence[tuple[str, str]], now: datetime, workers: int) -> None:
        """Ask Octopoes for the objects not asked yet, `workers` at a time."""

        def ask(key: tuple[str, str]) -> OOI | None:
            return self._objects.get_object(key[0], key[1], valid_time=now)

        self._oois.update(concurrently(ask, [key for key in keys if key not in self._oois], workers))


class BoefjePlanner:
    def __init__(
        self,
        *,
        tasks: TaskStore,
        schedules: ScheduleStore,
        seen: SeenPlugins,
        catalog: PluginCatalog,
        objects: ObjectGraph,
        raw_data: RawDataIndex,
        clock: Clock,
        settings: BoefjePlannerSettings | None = None,
        uniform: Uniform = random.uniform,
        decisions: DecisionLog | None = None,
        unplanned: UnplannedEvents | None = None,
    ) -> None:
        self._tasks = tasks
        self._schedules = schedules
        self._seen = seen
        self._catalog = catalog
        self._objects = objects
        self._raw_data = raw_data
        self._clock = clock
        self._settings = settings or BoefjePlannerSettings()
        self._uniform = uniform
        self._decisions = decisions or ForgetDecisions()
        self._unplanned = unplanned or UnplannedEvents(clock)
        self._duplicates = DuplicateOrganisations(catalog, objects, clock, self._settings.configs_cache_ttl)

    @property
    def settings(self) -> BoefjePlannerSettings:
        return self._settings

    # -- triggers ------------------------------------------------------------------------------------------

    def plan_for_mutation(self, mutation: ScanProfileMutation) -> PlanSummary:
        """A created or updated object → its organisation's boefjes that take it; a deleted one (Octopoes
        sends `value: null`) → cancel that organisation's queued tasks for it."""
        return self.plan_for_mutations([mutation])

    def plan_for_mutations(self, mutations: Sequence[ScanProfileMutation]) -> PlanSummary:
        """Several mutations (a batch of messages) in order, as if one by one, but the candidates of
        consecutive creates and updates share one lookup and one push; a delete first pushes what came
        before it, then cancels."""
        summary = PlanSummary("boefje.mutation")
        pending = MutationCandidates()
        with deferring(summary.planner, ",".join(sorted({m.client_id for m in mutations}))):
            for mutation in mutations:
                if mutation.operation is MutationOperation.DELETE:
                    self._plan_mutations(pending, summary)
                    self._cancel_for_deleted(mutation, summary)
                elif mutation.value is None:
                    summary.skip(NO_VALUE)
                    self._unplanned.report(mutation.client_id, NO_VALUE, "mutation")
                else:
                    found = self.candidates_for_object(mutation.client_id, mutation.value, mutation.operation)
                    if not found:
                        self._unplanned.report(mutation.client_id, NO_BOEFJE, "mutation")
                    pending.add(mutation.client_id, found)
            self._plan_mutations(pending, summary)
        return summary

    def _plan_mutations(self, pending: MutationCandidates, summary: PlanSummary) -> None:
        """Plan the mutations gathered so far together; report each one that planned nothing, and why."""
        verdicts = self._plan(pending.candidates, summary, self._clock.now())
        for organisation, start, end in pending.spans:
            reason = _why_nothing(verdicts[start:end])
            if reason is not None:
                self._unplanned.report(organisation, reason, "mutation")
        pending.clear()

    def plan_new_plugins(self, organisation_id: str) -> PlanSummary:
        """Boefjes enabled since the last run → a task per object they may scan. A boefje counts as seen once
        its objects are all planned (kept in the database); a disabled one is forgotten, so enabling it
        again counts as new."""
        summary = PlanSummary("boefje.new_plugins")
        with deferring(summary.planner, organisation_id):
            enabled = {p.id: p for p in self._catalog.enabled_boefjes(organisation_id) if consumed_types(p)}
            seen = self._seen.seen(organisation_id)
            self._seen.forget(organisation_id, seen - enabled.keys())
            for plugin_id in sorted(enabled.keys() - seen):
                self._enumerate(enabled[plugin_id], organisation_id, summary)
                self._seen.mark_seen(organisation_id, [plugin_id], self._clock.now())
                logger.info("plugin_enumerated org=%s plugin=%s", organisation_id, plugin_id)
        return summary

    def reschedule_due(self, organisation_id: str) -> PlanSummary:
        """Due schedules, oldest deadline first, a batch at a time until none is left; each either pushes
        its task, is disabled (plugin or object gone, no longer consumed or permitted) or is deferred."""
        summary = PlanSummary("boefje.reschedule")
        lookups = _Lookups(self._catalog, self._objects)
        size, lease = self._settings.reschedule_batch_size, self._settings.claim_lease
        with deferring(summary.planner, organisation_id):
            while True:
                with claimed(self._schedules, SCHEDULER, size, lease, organisation_id) as claim:
                    still_due = self._reschedule_batch(claim, summary, lookups)
                if len(claim.schedules) < size or still_due:  # those left due would only come back first
                    break
        return summary

    def rerank_queued(self, organisation_id: str) -> int:
        """Re-rank the automatic tasks whose rank has moved since it was set; how many changed priority.

        Only those are read (each carries the moment its rank changes next), a batch at a time and at
        most RERANK_BATCHES_PER_RUN batches, so a run's work follows the ranks that move, never the size
        of the queue; what one run leaves, the next takes first. Manual pushes keep their priority."""
        changed = 0
        size = self._settings.reschedule_batch_size
        with deferring("boefje.rerank", organisation_id):
            now = self._clock.now()
            for _ in range(RERANK_BATCHES_PER_RUN):
                due = self._tasks.ranks_due(SCHEDULER, organisation_id, now, size)
                ranks = {q.task_id: rank(self._settings, q.last_run_at, q.created_at, now) for q in due}
                self._tasks.set_ranks(ranks)
                changed += sum(ranks[q.task_id].priority != q.priority for q in due)
                if len(due) < size:
                    break
        logger.debug("tasks_reranked scheduler=boefje org=%s changed=%d", organisation_id, changed)
        return changed

    # -- the triggers' own steps ---------------------------------------------------------------------------

    def _cancel_for_deleted(self, mutation: ScanProfileMutation, summary: PlanSummary) -> None:
        organisation, reference = mutation.client_id, mutation.primary_key
        cancelled = self._tasks.cancel_queued_for_object(
            SCHEDULER, organisation, reference, Reason.OOI_DELETED
        )
        summary.cancelled += len(cancelled)
        logger.info(
            "tasks_cancelled scheduler=boefje org=%s input_ooi=%s count=%d reason=%s",
            organisation, reference, len(cancelled), Reason.OOI_DELETED.value,
        )  # fmt: skip

    def _enumerate(self, plugin: Plugin, organisation: str, summary: PlanSummary) -> None:
        if plugin.scan_level is None:
            summary.skip(Reason.PLUGIN_SCAN_LEVEL_UNKNOWN)
            return
        levels, valid_time = scan_levels(plugin), self._clock.now()
        listed = self._objects.objects(organisation, consumed_types(plugin), levels, valid_time=valid_time)
        for oois in batched(listed, self._settings.reschedule_batch_size):
            self._plan([candidate(plugin, organisation, ooi) for ooi in oois], summary, self._clock.now())

    def _reschedule_batch(self, claim: ScheduleClaim, summary: PlanSummary, lookups: _Lookups) -> int:
        """Gather the facts of the claimed schedules, then (for those still held) push, disable or defer each;
        how many are still due afterwards."""
        now = self._clock.now()
        candidates, disabled = self._claimed_candidates(claim.schedules, lookups, now)
        verdicts = self.assess(candidates, now)
        held = held_by(self._schedules, claim, self._settings.claim_lease, summary.planner)
        disabled = {key: reason for key, reason in disabled.items() if key in held}
        self._disable(disabled, summary)
        due = claim.schedules
        self._decisions.record([disabled_record(s, disabled[s.id], now) for s in due if s.id in disabled])
        verdicts = [
            v for v in verdicts if v.candidate.schedule is not None and v.candidate.schedule.id in held
        ]
        deadlines: dict[uuid.UUID, datetime] = {}
        still_due = 0
        for verdict in self._apply(verdicts, summary, now):
            item = verdict.candidate
            assert item.schedule is not None
            if verdict.outcome is not None and verdict.outcome.result is PushResult.PUSHED:
                continue
            if verdict.outcome is not None and verdict.outcome.result is PushResult.QUEUE_FULL:
                still_due += 1  # tried again at the next run, oldest first
                continue
            next_at = deferred_deadline(
                item, verdict.decision, verdict.last_run_at, now, self._settings, self._uniform
            )
            deadlines[item.schedule.id] = next_at
            still_due += next_at <= now
        self._schedules.set_deadlines(deadlines)
        return still_due

    def _claimed_candidates(
        self, due: Sequence[Schedule], lookups: _Lookups, now: datetime
    ) -> tuple[list[Candidate], dict[uuid.UUID, str]]:
        """The candidates of the claimed schedules, and those to disable with why: the Katalogus once per
        run, Octopoes once per object, for the claimed schedules only."""
        candidates: list[Candidate] = []
        disabled: dict[uuid.UUID, str] = {}
        parsed = {schedule.id: self._parsed(schedule, lookups) for schedule in due}
        objects = [
            (schedule.organisation, task.input_ooi)
            for schedule in due
            if not isinstance(gated := parsed[schedule.id], str) and (task := gated[0]).input_ooi
        ]
        lookups.prefetch_oois(objects, now, self._settings.lookup_concurrency)
        for schedule in due:
            found = self._from_schedule(schedule, parsed[schedule.id], lookups, now)
            if isinstance(found, Candidate):
                candidates.append(found)
            else:
                disabled[schedule.id] = found
        return candidates, disabled

    def _parsed(self, schedule: Schedule, lookups: _Lookups) -> tuple[BoefjeTask, Plugin | None] | str:
        """The due schedule's task and plugin, or the reason to disable it that needs no object."""
        try:
            task = BoefjeTask.model_validate(schedule.data)
        except ValidationError:
            return INVALID_DATA
        plugin = lookups.plugin(schedule.organisation, task.boefje.id)
        by_plugin_alone = schedule_still_valid(plugin, None, expects_ooi=False)
        if by_plugin_alone.action is Action.DISABLE:  # then Octopoes need not be asked
            return by_plugin_alone.reason
        return task, plugin

    def _from_schedule(
        self,
        schedule: Schedule,
        parsed: tuple[BoefjeTask, Plugin | None] | str,
        lookups: _Lookups,
        now: datetime,
    ) -> Candidate | str:
        """The due schedule's candidate, or the reason to disable the schedule."""
        if isinstance(parsed, str):
            return parsed
        (task, plugin), organisation = parsed, schedule.organisation
        reference = task.input_ooi
        ooi = lookups.ooi(organisation, reference, now) if reference else None
        validity = schedule_still_valid(plugin, ooi, expects_ooi=reference is not None)
        if validity.action is Action.DISABLE:
            return validity.reason
        assert plugin is not None  # schedule_still_valid disables a schedule whose plugin is gone
        return candidate(plugin, organisation, ooi, input_ooi=reference, schedule=schedule)

    def _disable(self, disabled: dict[uuid.UUID, str], summary: PlanSummary) -> None:
        self._schedules.disable(disabled.keys())
        for schedule_id, reason in disabled.items():
            summary.disable(reason)
            logger.info("schedule_disabled schedule_id=%s scheduler=boefje reason=%s", schedule_id, reason)

    # -- the pipeline every trigger shares: gather → decide (pure) → apply ----------------------------------

    def candidates_for_object(
        self, organisation: str, ooi: OOI, operation: MutationOperation | None
    ) -> list[Candidate]:
        """The organisation's boefjes that take the object's type, as candidates (enabled or not: the rules
        decide). A mutation's candidates, and those `katsched.schedulers.explain` asks about."""
        boefjes = self._catalog.boefjes_consuming(organisation, ooi.object_type)
        return [candidate(b, organisation, ooi, operation=operation) for b in boefjes]

    def assess(self, candidates: Sequence[Candidate], now: datetime) -> list[Verdict]:
        """Gather the facts of each candidate and decide, writing nothing: a verdict per candidate, exactly
        as `_plan` would decide it. `katsched.schedulers.explain` answers "why (not)?" through this."""
        if not candidates:
            return []
        latest, in_bytes = self._gather(candidates)
        policy = self._settings.policy
        return [
            decide(item, latest.get(item.hash), in_bytes.get(bytes_key(item)), policy, now)
            for item in candidates
        ]

    def duplicate_twins(self, item: Candidate, now: datetime) -> list[Candidate]:
        """The candidate's twins in other organisations that one run of it serves (reference §4.2.5 step 6):
        same boefje settings (Katalogus), the object is there, and the run's plugin may scan their copy."""
        reference = item.task.input_ooi
        if not reference:
            return []
        others = self._duplicates.configured(item.organisation, item.plugin.id)
        holding = self._duplicates.holding(reference, others, now) if others else {}
        return [
            candidate(item.plugin, organisation, ooi)
            for organisation, ooi in sorted(holding.items())
            if boefje_permission(item.plugin, ooi).runs
        ]

    def _plan(self, candidates: Sequence[Candidate], summary: PlanSummary, now: datetime) -> list[Verdict]:
        """Decide each candidate, push the ones that run (in one transaction); a verdict per candidate."""
        return self._apply(self.assess(candidates, now), summary, now)

    def _gather(self, candidates: Sequence[Candidate]) -> tuple[dict[str, Task], dict[BytesKey, BoefjeMeta]]:
        """The newest task of each candidate's hash, and Bytes' last run where our history cannot tell and
        no check that needs no history has refused already (so Bytes is not asked in vain)."""
        latest = self._tasks.latest_by_hash(SCHEDULER, {item.hash for item in candidates})
        asked = [item for item in candidates if precheck(item) is None and needs_bytes(latest.get(item.hash))]
        return latest, self._last_runs_in_bytes(asked)

    def _apply(self, verdicts: Sequence[Verdict], summary: PlanSummary, now: datetime) -> list[Verdict]:
        """Log the refusals, push the runs, remember each decision; the verdicts with the push outcomes."""
        for verdict in verdicts:
            if not verdict.decision.runs:
                summary.skip(verdict.decision.reason)
                logger.debug(
                    "task_skipped scheduler=boefje org=%s boefje=%s input_ooi=%s reason=%s",
                    verdict.candidate.organisation, verdict.candidate.plugin.id,
                    verdict.candidate.task.input_ooi, verdict.decision.reason,
                )  # fmt: skip
        runs = [verdict for verdict in verdicts if verdict.decision.runs]

        def decisions_of(outcomes: Sequence[PushOutcome]) -> list[DecisionRecord]:
            return [decision_record(verdict, now) for verdict in _with_outcomes(verdicts, outcomes)]

        return _with_outcomes(verdicts, self._push(runs, summary, now, decisions_of))

    def _last_runs_in_bytes(self, candidates: Sequence[Candidate]) -> dict[BytesKey, BoefjeMeta]:
        """Bytes' last run of each candidate that has one: one question per object, for all its boefjes."""
        boefjes: dict[tuple[str, str | None], set[str]] = {}
        for item in candidates:
            boefjes.setdefault((item.organisation, item.task.input_ooi), set()).add(item.plugin.id)

        def ask(key: tuple[str, str | None]) -> dict[str, BoefjeMeta]:
            return self._raw_data.last_runs(key[1], key[0], boefjes[key])

        found: dict[BytesKey, BoefjeMeta] = {}
        for (organisation, reference), runs in concurrently(
            ask, boefjes, self._settings.lookup_concurrency
        ).items():
            found.update(((organisation, reference, boefje_id), meta) for boefje_id, meta in runs.items())
        return found

    def _push(
        self, runs: Sequence[Verdict], summary: PlanSummary, now: datetime, decisions_of: DecisionsOf
    ) -> list[PushOutcome]:
        """Push each run's task (after its duplicates in other organisations), with the decisions the runs'
        own outcomes make; those outcomes."""
        groups = [self._with_duplicates(verdict, now) for verdict in runs]
        wanted = {item.hash for group in groups for item, _ in group if item.recurs and item.schedule is None}
        found = self._schedules.by_hashes(wanted) if wanted else {}
        planned: list[Planned] = []
        own: list[int] = []
        ranks: dict[datetime | None, NewRank] = {}  # a batch's runs share a few last runs (new objects: none)
        for verdict, group in zip(runs, groups, strict=True):
            if verdict.last_run_at not in ranks:
                ranks[verdict.last_run_at] = rank(self._settings, verdict.last_run_at, now, now)
            ranked = ranks[verdict.last_run_at]
            for item, reason in group:
                link = schedule_link(item, found.get(item.hash), now, self._settings, self._uniform)
                data = item.task.model_dump(mode="json")
                draft = TaskDraft(
                    SCHEDULER, item.organisation, ranked.priority, data, item.task.id, link,
                    last_run_at=verdict.last_run_at, rerank_at=ranked.rerank_at,
                )  # fmt: skip
                planned.append(Planned(draft, reason))
            own.append(len(planned) - 1)  # the run's own task comes last in its group

        def own_decisions(outcomes: Sequence[PushOutcome]) -> Sequence[DecisionRecord]:
            return decisions_of([outcomes[index] for index in own])

        outcomes = push_and_record(self._tasks, planned, summary, own_decisions, self._decisions)
        return [outcomes[index] for index in own]

    def _with_duplicates(self, verdict: Verdict, now: datetime) -> list[tuple[Candidate, str]]:
        """The run, preceded by one task per other organisation it can serve, all sharing the run's id as
        `deduplication_key`; just the run when there are none. The run's plugin decides the permission."""
        item, reason = verdict.candidate, verdict.decision.reason
        twins = self.duplicate_twins(item, now)
        if not twins:
            return [(item, reason)]
        key = item.task.id

        def grouped(member: Candidate) -> Candidate:
            return replace(member, task=member.task.model_copy(update={"deduplication_key": key}))

        return [(grouped(twin), DEDUPLICATED) for twin in twins] + [(grouped(item), reason)]


def _with_outcomes(verdicts: Sequence[Verdict], outcomes: Sequence[PushOutcome]) -> list[Verdict]:
    """The verdicts, each run with its push outcome (`outcomes` in the order of the runs)."""
    pending = iter(outcomes)
    return [
        replace(verdict, outcome=next(pending)) if verdict.decision.runs else verdict for verdict in verdicts
    ]


def _why_nothing(verdicts: Sequence[Verdict]) -> str | None:
    """None when one of a mutation's candidates pushed its task; else the first candidate's reason."""
    if any(v.outcome is not None and v.outcome.result is PushResult.PUSHED for v in verdicts):
        return None
    first = verdicts[0]
    return first.outcome.result.value if first.outcome is not None else str(first.decision.reason)
