"""What a push through the API does beside queueing the task (reference §4.4): the task joins the schedule of
its identity, created if there is none, with the next deadline of that schedule.

- boefje: the deadline comes from the plugin's cron, else its interval, else the grace period (as for the
  planners' pushes); the plugin's cron is written to the schedule. A Katalogus that cannot answer does not
  fail the push: the schedule's own cron, else the grace period, sets the deadline.
- report: a manual push creates a one-off schedule (`deadline_at` null); an existing schedule with a cron
  moves to its next fire, one whose deadline has passed gets none.
- normalizer: no schedules.
A disabled schedule is left alone and the task stays without one, as in the original.
"""

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from katsched.clock import Clock
from katsched.core.deadlines import Uniform, next_cron_fire, next_deadline
from katsched.core.models import PAYLOAD_TYPES, BoefjeTask, Plugin, Schedule, SchedulerKind
from katsched.core.ports import PluginCatalog, ScheduleLink, ScheduleRule
from katsched.errors import ServiceError
from katsched.schedulers.boefje_plan import BoefjePlannerSettings, deadline

logger = logging.getLogger("katsched.schedulers")


@dataclass
class ManualPushes:
    catalog: PluginCatalog
    clock: Clock
    settings: BoefjePlannerSettings = field(default_factory=BoefjePlannerSettings)
    uniform: Uniform = random.uniform

    def schedule_rule(
        self, kind: SchedulerKind, organisation: str, data: dict[str, Any], *, wait: bool = True
    ) -> ScheduleRule | None:
        """How a pushed task joins the schedule of its identity, decided from that schedule as the push's
        transaction finds it; None: no schedule (invalid data is left to the push, which refuses it). The
        Katalogus is asked here, before the push's transaction, never inside it. `wait=False`: WouldWait
        rather than ask it, when its answer is not at hand."""
        if kind is SchedulerKind.NORMALIZER:
            return None
        try:
            payload = PAYLOAD_TYPES[kind].model_validate(data)
        except ValidationError:
            return None
        now = self.clock.now()
        if isinstance(payload, BoefjeTask):
            plugin = self._plugin(organisation, payload.boefje.id, wait)
            return _enabled_only(lambda found: self._boefje_link(plugin, found, now))
        return _enabled_only(lambda found: _report_link(found, now))

    def _boefje_link(self, plugin: Plugin | None, found: Schedule | None, now: datetime) -> ScheduleLink:
        schedule_id = found.id if found is not None else None
        if plugin is not None:
            return ScheduleLink(
                schedule_id, deadline(plugin, found, now, self.settings, self.uniform), plugin.cron
            )
        cron = found.schedule if found is not None else None
        settings = self.settings
        next_at = next_deadline(
            now,
            cron=cron,
            interval_minutes=None,
            grace_period=settings.grace_period,
            jitter=settings.deadline_jitter,
            uniform=self.uniform,
        )
        return ScheduleLink(schedule_id, next_at)

    def _plugin(self, organisation: str, plugin_id: str, wait: bool) -> Plugin | None:
        try:
            return self.catalog.plugin(organisation, plugin_id, wait=wait)
        except ServiceError as exc:
            logger.warning(
                "manual_push_plugin_unknown org=%s plugin=%s error=%r", organisation, plugin_id, str(exc)
            )
            return None


def _enabled_only(rule: Callable[[Schedule | None], ScheduleLink]) -> ScheduleRule:
    """A disabled schedule is left alone, and the task stays without one (as in the original)."""
    return lambda found: None if found is not None and not found.enabled else rule(found)


def _report_link(found: Schedule | None, now: datetime) -> ScheduleLink:
    if found is None:
        return ScheduleLink(None, None)
    if found.schedule:
        try:
            return ScheduleLink(found.id, next_cron_fire(found.schedule, now))
        except ValueError:
            pass  # an invalid cron: the report planner disables the schedule when it comes due
    keep = found.deadline_at if found.deadline_at is not None and found.deadline_at > now else None
    return ScheduleLink(found.id, keep)
