"""A job's end, told to the other nodes with what it left in the job's row.

In distributed mode an API node's waiter for a job's end is woken by the worker's
notification, then read the job from the database: one more round trip on the answer's
path, for what the worker had just written. A worker that holds a job knows its whole row
(the claim returned it, and every later change is its own), so with the end it sends the
columns that change after a job's insert; a waiter lays them over the row it already holds.
The columns that never change (the plan, the metadata, the request...) are not sent: the
payload stays small, and a job whose end does not fit in a notification (a large outcome)
is announced without them, and read as before.

They go on a channel of their own, before the job's usual notification: a node that does
not listen to it still wakes on that one.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bgcompiler.store.jobs import JobRow

ENDS_CHANNEL = "bgc_job_ends"
# PostgreSQL refuses a payload of 8000 bytes or more.
PAYLOAD_MAX = 7999
# The columns a job's life changes after its insert (store/schema.py): an end sends them all.
CHANGING = (
    "status",
    "started_at",
    "finished_at",
    "attempts",
    "runs_done",
    "outcome",
    "error",
    "worker",
    "route",
    "sent_at",
)


class JobEnd(asyncio.Event):
    """Set when the job ends. `changes`: the changing columns as the end left them, when the
    notification carried them (None: the waiter reads the job)."""

    def __init__(self) -> None:
        super().__init__()
        self.changes: dict[str, Any] | None = None

    def ended(self, row: JobRow) -> JobRow | None:
        """`row` (the job as the waiter read it after taking this end) as the end left it;
        None when the end came without its columns."""
        return None if self.changes is None else replace(row, **self.changes)


def end_payload(row: JobRow) -> str | None:
    """The notification of the job's end (`row`: the job as it ended); None if too large."""
    changes = {name: getattr(row, name) for name in CHANGING}
    if changes["outcome"] is not None:
        changes["outcome"] = base64.b64encode(changes["outcome"]).decode()
    # ASCII only (json escapes the rest), so its length in characters is its size in bytes.
    payload = json.dumps({"id": row.id, "changes": changes}, separators=(",", ":"))
    return payload if len(payload) <= PAYLOAD_MAX else None


def end_changes(payload: str) -> tuple[str, dict[str, Any]]:
    """The job id and changing columns an end's notification carries; ValueError if it is
    not one."""
    try:
        told = json.loads(payload)
        job_id, changes = told["id"], told["changes"]
        if not isinstance(job_id, str) or set(changes) != set(CHANGING):
            raise ValueError("not the end of a job")
        if changes["outcome"] is not None:
            changes["outcome"] = base64.b64decode(changes["outcome"], validate=True)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError("not the end of a job") from exc
    return job_id, changes
