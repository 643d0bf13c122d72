"""The one backoff policy; how HTTP retries and the supervisor wait by it (the consumers: intake tests)."""

import pytest

from katsched.backoff import Backoff
from katsched.kat.http import RetryPolicy
from katsched.supervisor import RestartPolicy, State, Supervised, Supervisor
from katsched.testing import FakeClock


def test_backoff_grows_and_is_bounded_with_jitter_below_the_base() -> None:
    backoff = Backoff(initial=0.5, maximum=60, factor=2, jitter=0.2)
    assert [backoff.delay(n, 0.0) for n in range(9)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.delay(3, 0.999) == pytest.approx(4 * (1 - 0.2 * 0.999))
    assert backoff.delay(10_000, 0.5) == pytest.approx(54.0)  # no overflow for a long outage


def test_without_jitter_the_pause_ignores_the_random_draw() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0, factor=3.0, jitter=0.0)
    assert [backoff.delay(n, 0.9) for n in range(4)] == [1.0, 3.0, 8.0, 8.0]
    assert backoff.delay(-1) == 1.0  # a negative attempt counts as the first


@pytest.mark.parametrize(
    "options", [{"initial": 0}, {"initial": 2, "maximum": 1}, {"factor": 0.5}, {"jitter": 1.0}]
)
def test_an_unusable_backoff_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="unusable backoff"):
        Backoff(**options)


def test_http_retries_follow_the_backoff_and_a_retry_after_only_lengthens_it() -> None:
    policy = RetryPolicy(attempts=5, backoff=Backoff(initial=0.25, maximum=2.0, jitter=0.0))
    assert [policy.delay(retry) for retry in range(1, 6)] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert policy.delay(1, retry_after=1.5) == 1.5
    assert policy.delay(1, retry_after=30.0) == 2.0  # the backoff's maximum caps the server's wish


def test_restarts_follow_the_backoff() -> None:
    policy = RestartPolicy(Backoff(initial=1.0, maximum=60.0, jitter=0.0))
    assert [policy.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


class Dies:
    """A component whose thread has always just ended."""

    def start(self) -> None: ...

    def alive(self) -> bool:
        return False

    def stop(self, timeout: float) -> bool:
        return True


def test_the_supervisor_waits_out_each_pause_on_the_injected_clock() -> None:
    clock = FakeClock()
    backoff = Backoff(initial=2.0, maximum=5.0, jitter=0.0)
    supervisor = Supervisor([Supervised("worker", Dies)], RestartPolicy(backoff, budget=10), clock=clock)
    supervisor.start_all()
    slot = supervisor.slots[0]
    for pause in (2.0, 4.0, 5.0, 5.0):
        supervisor.check()  # notices the death, schedules the restart
        assert slot.state is State.RESTARTING and slot.retry_at == clock.monotonic() + pause
        clock.advance(seconds=pause - 0.5)
        supervisor.check()
        assert slot.state is State.RESTARTING
        clock.advance(seconds=0.5)
        supervisor.check()  # restarted: RUNNING until the next check sees it dead again
        assert slot.state is State.RUNNING
