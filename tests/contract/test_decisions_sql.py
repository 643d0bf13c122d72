"""The planners' last decisions in SQL (SQLite and PostgreSQL): the refusals `katsched status` counts, and the
retention job pruning them with the history."""

from datetime import timedelta

from sqlalchemy import Engine

from katsched.core.ports import DecisionRecord
from katsched.schedulers.sweeps import RetentionPolicy, prune_retention
from katsched.store.decisions import SqlDecisionLog, count_refusals
from katsched.store.maintenance import SqlHousekeeping
from katsched.testing import FakeClock


def test_status_counts_the_refusals_of_the_last_hour(engine: Engine, clock: FakeClock) -> None:
    log = SqlDecisionLog(engine)
    now = clock.now()
    log.record(
        [DecisionRecord("o", f"s{i}", "p", "boefje", "skip", "scan_level_too_low", now) for i in range(3)]
        + [DecisionRecord("o", "s9", "p", "boefje", "skip", "plugin_disabled", now - timedelta(hours=2))]
        + [DecisionRecord("o", "s8", "p", "boefje", "run", "never_ran", now)]
    )
    reasons = ["scan_level_too_low", "plugin_disabled"]
    assert count_refusals(engine, now - timedelta(hours=1), reasons) == {"scan_level_too_low": 3}


def test_retention_prunes_old_decisions_with_the_history(engine: Engine, clock: FakeClock) -> None:
    log = SqlDecisionLog(engine)
    old = clock.now()
    log.record([DecisionRecord("o", f"s{i}", "p", "boefje", "skip", "x", old) for i in range(5)])
    clock.advance(days=8)
    log.record([DecisionRecord("o", "new", "p", "boefje", "skip", "x", clock.now())])
    policy = RetentionPolicy(tasks_days=30, history_days=7, batch_size=2)
    summary = prune_retention(SqlHousekeeping(engine), clock, policy)
    assert summary.decisions == 5 and summary.complete
    assert set(log.last("o", "new")) == {"p"} and log.last("o", "s0") == {}
