"""Ports: the small Protocols through which the planners reach the world outside `core/`.

Each port has a real adapter and an in-memory one (`katsched.testing`); one contract suite runs against both,
so the fakes cannot drift from the real thing. Only stdlib, pydantic and `core` types appear here.

The ports live in four modules by family (`services`, `tasks`, `schedules`, `leases`); import them
from here.
"""

from katsched.core.ports.leases import (
    JobLease,
    JobLeases,
)
from katsched.core.ports.schedules import (
    ScheduleClaim,
    ScheduleLink,
    SchedulePage,
    ScheduleQuery,
    ScheduleRegistry,
    ScheduleStore,
    SeenPlugins,
)
from katsched.core.ports.services import (
    ObjectGraph,
    PluginCatalog,
    PluginType,
    RawDataIndex,
)
from katsched.core.ports.tasks import (
    DecisionLog,
    DecisionRecord,
    DecisionsOf,
    Housekeeping,
    NewRank,
    PoppedBy,
    PushOutcome,
    PushResult,
    QueuedRank,
    Render,
    ScheduleRule,
    TaskDraft,
    TaskPage,
    TaskQuery,
    TaskQueue,
    TaskStore,
    render_task,
)

__all__ = [
    "DecisionLog",
    "DecisionRecord",
    "DecisionsOf",
    "Housekeeping",
    "JobLease",
    "JobLeases",
    "NewRank",
    "ObjectGraph",
    "PluginCatalog",
    "PluginType",
    "PoppedBy",
    "PushOutcome",
    "PushResult",
    "QueuedRank",
    "RawDataIndex",
    "Render",
    "ScheduleClaim",
    "ScheduleLink",
    "SchedulePage",
    "ScheduleQuery",
    "ScheduleRegistry",
    "ScheduleRule",
    "ScheduleStore",
    "SeenPlugins",
    "TaskDraft",
    "TaskPage",
    "TaskQuery",
    "TaskQueue",
    "TaskStore",
    "render_task",
]
