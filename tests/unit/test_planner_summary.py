"""`PlanSummary`: the one line a planner run leaves in the daemon's log."""

from collections import Counter

from katsched.core.rules import Reason
from katsched.schedulers.summary import PlanSummary


def test_the_log_line_names_the_planner_and_counts_by_reason_most_frequent_first() -> None:
    summary = PlanSummary(
        "boefje.reschedule",
        created=3,
        skipped=Counter({Reason.ALREADY_ACTIVE: 1, Reason.WITHIN_GRACE_PERIOD: 2}),
        disabled=Counter({Reason.PLUGIN_GONE: 1}),
    )
    assert summary.log_line() == (
        "planner_run planner=boefje.reschedule created=3 skipped=within_grace_period:2,already_active:1 "
        "disabled=plugin_gone:1"
    )


def test_an_idle_run_and_ties() -> None:
    assert PlanSummary("report.reschedule").log_line() == (
        "planner_run planner=report.reschedule created=0 skipped=- disabled=-"
    )
    tied = PlanSummary("normalizer.raw_file", skipped=Counter({"queue_full": 1, "already_queued": 1}))
    assert "skipped=already_queued:1,queue_full:1 " in tied.log_line()


def test_cancelled_tasks_appear_only_when_there_are_some() -> None:
    summary = PlanSummary("boefje.mutation", cancelled=2)
    assert (
        summary.log_line() == "planner_run planner=boefje.mutation created=0 skipped=- disabled=- cancelled=2"
    )


def test_merge_adds_up_without_changing_either_summary() -> None:
    first = PlanSummary("boefje.reschedule", created=1, skipped=Counter({"already_queued": 1}))
    second = PlanSummary("boefje.reschedule", created=2, disabled=Counter({"ooi_gone": 1}), cancelled=1)
    second.skip(Reason.ALREADY_ACTIVE)
    second.skip("already_queued", 2)
    second.disable(Reason.OOI_GONE)
    merged = first.merge(second)
    assert merged == PlanSummary(
        "boefje.reschedule",
        created=3,
        skipped=Counter({"already_queued": 3, "already_active": 1}),
        disabled=Counter({"ooi_gone": 2}),
        cancelled=1,
    )
    assert first.created == 1 and first.skipped == {"already_queued": 1} and second.created == 2
