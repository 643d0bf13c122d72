"""The reference of bench/api.py: boefje push and pop as a bare ASGI app with raw sqlite3 on the same uvicorn.

No framework, no validation beyond what the statements need, one sqlite3 connection used on the event loop
(no thread hop): the machine's limit for this work in Python. The same schema as katsched's (the database is
created by katsched's migrations, so the same indexes and triggers), WAL, synchronous=NORMAL, a write lock at
BEGIN IMMEDIATE, the same duplicate check on push and the same single `UPDATE … RETURNING` on pop. A push
writes what katsched's push writes: the task joins the schedule of its identity, which is created when there
is none and otherwise moved to its next deadline (a manual push's schedule, as the original's post-push).

    python bench/bare_app.py DATABASE PORT
"""

import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from store import now_text, raw_connection  # bench/store.py: the same raw recipe

from katsched.core.hashing import murmur_hex

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

COLUMNS = (
    "id, scheduler_id, schedule_id, organisation, priority, status, type, hash, data, created_at, modified_at"
)
INSERT = (
    "INSERT INTO tasks (id, scheduler_id, schedule_id, organisation, priority, status, type, hash, data,"
    " created_at, modified_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)"
)
SCHEDULE = "SELECT id, enabled FROM schedules WHERE hash = ?"
NEW_SCHEDULE = (
    "INSERT INTO schedules (id, scheduler_id, organisation, hash, data, enabled, deadline_at, created_at,"
    " modified_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)"
)
MOVE_SCHEDULE = "UPDATE schedules SET deadline_at = ?, modified_at = ? WHERE id = ?"
DUPLICATE = "SELECT id FROM tasks WHERE hash = ? AND scheduler_id = ? AND status = 'queued' LIMIT 1"
POP = (
    "UPDATE tasks SET status = 'dispatched', modified_at = ? WHERE id IN (SELECT id FROM tasks"
    " WHERE scheduler_id = ? AND status = 'queued' ORDER BY priority, created_at LIMIT ?)"
    f" RETURNING {COLUMNS}"
)


def as_task(row: tuple[Any, ...]) -> dict[str, Any]:
    task = dict(zip([c.strip() for c in COLUMNS.split(",")], row, strict=True))
    task["id"] = str(uuid.UUID(task["id"]))
    task["schedule_id"] = str(uuid.UUID(task["schedule_id"])) if task["schedule_id"] else None
    task["data"] = json.loads(task["data"])
    return task


class BareApp:
    def __init__(self, path: str) -> None:
        self.db = raw_connection(Path(path))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, query = scope["path"], parse_qs(scope["query_string"].decode())
        scheduler_id = path.split("/")[2] if path.startswith("/schedulers/") else ""
        if path.endswith("/push"):
            status, answer = 201, self.push(scheduler_id, json.loads(body))
        elif path.endswith("/pop"):
            status, answer = 200, self.pop(scheduler_id, int(query.get("limit", ["1"])[0]))
        else:
            status, answer = 200, {"healthy": True}
        payload = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def push(self, scheduler_id: str, item: dict[str, Any]) -> dict[str, Any]:
        data, organisation = item["data"], item["organisation"]
        task_id = uuid.uuid4()
        data["id"] = str(task_id)
        task_hash = murmur_hex(f"{data['input_ooi']}-{data['boefje']['id']}-{organisation}")
        stamp = now_text()
        document = json.dumps(data)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            schedule = self.db.execute(SCHEDULE, (task_hash,)).fetchone()
            schedule_id = None
            if self.db.execute(DUPLICATE, (task_hash, scheduler_id)).fetchone() is None:
                schedule_id = self._join_schedule(schedule, scheduler_id, organisation, task_hash, document)
                row = (task_id.hex, scheduler_id, schedule_id, organisation, item["priority"], scheduler_id,
                       task_hash, document, stamp, stamp)  # fmt: skip
                self.db.execute(INSERT, row)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return as_task((task_id.hex, scheduler_id, schedule_id, organisation, item["priority"], "queued",
                        scheduler_id, task_hash, document, stamp, stamp))  # fmt: skip

    def _join_schedule(
        self, schedule: tuple[str, int] | None, scheduler_id: str, organisation: str, identity: str, data: str
    ) -> str | None:
        stamp, deadline = now_text(), now_text(timedelta(days=1))
        if schedule is None:
            schedule_id = uuid.uuid4().hex
            row = (schedule_id, scheduler_id, organisation, identity, data, deadline, stamp, stamp)
            self.db.execute(NEW_SCHEDULE, row)
            return schedule_id
        if not schedule[1]:
            return None  # a disabled schedule is left alone
        self.db.execute(MOVE_SCHEDULE, (deadline, stamp, schedule[0]))
        return schedule[0]

    def pop(self, scheduler_id: str, limit: int) -> dict[str, Any]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            rows = self.db.execute(POP, (now_text(), scheduler_id, limit)).fetchall() if limit > 0 else []
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        results = [as_task(row) for row in rows]
        return {"count": len(results), "next": None, "previous": None, "results": results}


if __name__ == "__main__":
    uvicorn.run(BareApp(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
                access_log=False, lifespan="off")  # fmt: skip
