"""The one backoff policy: bounded, growing pauses before trying again.

Used, each with its own parameters, by the KAT clients' HTTP retries (`kat/http.py`), the RabbitMQ consumers'
reconnects and requeues (`intake/`) and the supervisor's restarts (`supervisor.py`). It only computes a pause;
whoever waits measures it on the injected clock (or sleeps through an injected `sleep`).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """`initial`·`factor`^attempt, capped at `maximum`, each shortened at random by up to `jitter` of itself
    so that clients that failed together do not retry in lock-step (jitter 0: the same pause every time)."""

    initial: float = 0.5
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum and self.factor >= 1 and 0 <= self.jitter < 1):
            raise ValueError(f"unusable backoff {self}")

    def delay(self, attempt: int, rand: float = 0.0) -> float:
        """The pause before retry number `attempt` (0 for the first); `rand` is uniform in [0, 1)."""
        exponent = min(max(attempt, 0), 64)  # past this the cap has long been reached; avoids huge floats
        base = min(self.maximum, self.initial * self.factor**exponent)
        return base * (1 - self.jitter * rand)
