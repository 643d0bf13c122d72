"""A lock that serves its waiters in arrival order, handing itself over directly on release."""

import threading
from collections import deque
from types import TracebackType


class TurnLock:
    """First come, first served: `threading.Lock` lets a releasing thread take the lock straight back, which
    under load starves some waiters for tens of milliseconds."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Lock] = deque()

    def __enter__(self) -> None:
        self.acquire()

    def acquire(self) -> None:
        """Take the lock, waiting for the waiters before us."""
        with self._guard:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        turn.acquire()  # released by the holder, which hands the lock to us

    def acquire_now(self) -> bool:
        """Take the lock if it is free and nobody waits for it; never waits. True: `release` it."""
        with self._guard:
            if self._held:
                return False
            self._held = True
            return True

    def __exit__(
        self, _type: type[BaseException] | None, _error: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.release()

    def release(self) -> None:
        """Hand the lock to the first waiter, or free it."""
        with self._guard:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._held = False
