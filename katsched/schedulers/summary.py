"""What one planner run did, for the daemon's log line and the dashboard."""

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class PlanSummary:
    """Counts of one planner run: tasks created, candidates skipped and schedules disabled, by reason.

    Reasons are the stable snake_case values of `katsched.core.rules.Reason`, plus the planners' own
    (`already_queued`, `queue_full`, `invalid_data`, …). `cancelled` counts tasks cancelled by a delete.
    """

    planner: str
    created: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    disabled: Counter[str] = field(default_factory=Counter)
    cancelled: int = 0

    def skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skipped[reason] += count

    def disable(self, reason: str, count: int = 1) -> None:
        if count:
            self.disabled[reason] += count

    def merge(self, other: "PlanSummary") -> "PlanSummary":
        """Both runs' counts together, under this summary's planner name; neither summary changes."""
        return PlanSummary(
            planner=self.planner,
            created=self.created + other.created,
            skipped=self.skipped + other.skipped,
            disabled=self.disabled + other.disabled,
            cancelled=self.cancelled + other.cancelled,
        )

    def log_line(self) -> str:
        """E.g. `planner_run planner=boefje.reschedule created=3 skipped=within_grace_period:2 disabled=-`."""
        line = (
            f"planner_run planner={self.planner} created={self.created} "
            f"skipped={_counts(self.skipped)} disabled={_counts(self.disabled)}"
        )
        return f"{line} cancelled={self.cancelled}" if self.cancelled else line


def _counts(counter: Counter[str]) -> str:
    """`reason:count` pairs, most frequent first (ties by name), so the line is stable; `-` for none."""
    pairs = sorted(((reason, n) for reason, n in counter.items() if n), key=lambda pair: (-pair[1], pair[0]))
    return ",".join(f"{reason}:{n}" for reason, n in pairs) or "-"
