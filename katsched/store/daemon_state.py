"""The peers table: each daemon's row, how `katsched status` and `/health`, in other processes, learn which
daemons run on this database and what each is doing.

One row per daemon instance (host and pid; a container restarted with pid 1 reuses its row). The daemon
writes it on start, on every heartbeat and when it stops; nothing else in the daemon reads it. A daemon that
dies without saying so (kill -9, power loss) keeps its row, which goes silent: after `stale_after` seconds
without a heartbeat the views flag it. On SQLite the next daemon on the file marks such rows stopped (it
holds the file alone, so they are dead); elsewhere the retention job forgets them with the history.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from katsched.store.engine import read, write
from katsched.store.tables import daemon_state


@dataclass(frozen=True)
class DaemonState:
    id: str
    hostname: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None = None
    components: dict[str, Any] = field(default_factory=dict)

    def stale(self, now: datetime, after_seconds: float) -> bool:
        """No heartbeat for `after_seconds`: the daemon died without saying so (kill -9, power loss)."""
        return (now - self.heartbeat_at).total_seconds() > after_seconds

    @property
    def leases(self) -> list[str]:
        """The leases (once-only jobs) it held at its last heartbeat; none when it reports none."""
        held = self.components.get("leases")
        return [str(name) for name in held] if isinstance(held, list) else []


def stale_after(heartbeat_interval: float) -> float:
    """Seconds without a heartbeat after which a daemon that did not say it stopped is taken for dead: three
    missed heartbeats, and never less than 30 s (a busy machine may be late once or twice)."""
    return max(3.0 * heartbeat_interval, 30.0)


class DaemonStateStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def register(self, state: DaemonState, *, sole: bool = False) -> None:
        """Write the instance's row afresh (delete + insert: the same on SQLite and PostgreSQL). `sole`: this
        daemon holds the database alone (SQLite), so any other row not marked stopped is a daemon that died
        without saying so; it is marked stopped at its last heartbeat."""
        row = {
            "id": state.id,
            "hostname": state.hostname,
            "pid": state.pid,
            "version": state.version,
            "started_at": state.started_at,
            "heartbeat_at": state.heartbeat_at,
            "stopped_at": state.stopped_at,
            "components": state.components,
        }
        with write(self.engine) as connection:
            connection.execute(delete(daemon_state).where(daemon_state.c.id == state.id))
            connection.execute(insert(daemon_state), row)
            if sole:
                dead = (daemon_state.c.id != state.id, daemon_state.c.stopped_at.is_(None))
                retire = update(daemon_state).where(*dead).values(stopped_at=daemon_state.c.heartbeat_at)
                connection.execute(retire)

    def heartbeat(self, instance_id: str, at: datetime, components: dict[str, Any]) -> None:
        self._update(instance_id, heartbeat_at=at, components=components)

    def mark_stopped(self, instance_id: str, at: datetime, components: dict[str, Any]) -> None:
        self._update(instance_id, heartbeat_at=at, stopped_at=at, components=components)

    def _update(self, instance_id: str, **values: Any) -> None:
        statement = update(daemon_state).where(daemon_state.c.id == instance_id).values(**values)
        with write(self.engine) as connection:
            connection.execute(statement)

    def instances(self) -> list[DaemonState]:
        """Every known instance, the freshest heartbeat first."""
        statement = select(daemon_state).order_by(daemon_state.c.heartbeat_at.desc())
        with read(self.engine) as connection:
            return [DaemonState(**row._mapping) for row in connection.execute(statement)]

    def live(self) -> list[DaemonState]:
        """The peers: every instance that has not said it stopped (silent ones included), freshest first."""
        statement = (
            select(daemon_state)
            .where(daemon_state.c.stopped_at.is_(None))
            .order_by(daemon_state.c.heartbeat_at.desc(), daemon_state.c.id)
        )
        with read(self.engine) as connection:
            return [DaemonState(**row._mapping) for row in connection.execute(statement)]

    def prune(self, older_than: datetime) -> int:
        """Forget instances whose last heartbeat is older than `older_than`."""
        statement = delete(daemon_state).where(daemon_state.c.heartbeat_at < older_than)
        with write(self.engine) as connection:
            return int(connection.execute(statement).rowcount)
