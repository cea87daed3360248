"""What the API needs from whatever executes its jobs: the node's own scheduler (single
node) or the cluster behind the job queue (an API node of distributed mode)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bgcompiler.scheduler import Job


class Executor(Protocol):
    @property
    def workers(self) -> int:
        """Runs that may execute at once."""

    @property
    def busy_workers(self) -> int:
        """Runs executing now."""

    @property
    def waiting_runs(self) -> int:
        """Runs admitted and waiting."""

    @property
    def accepting(self) -> bool:
        """Whether jobs are admitted now."""

    def check_room(self, runs: int) -> None:
        """Raises Busy/ShuttingDown now if a job of `runs` runs would be refused."""

    def submit(self, job: Job, *, force: bool = False) -> Job:
        """Queues the job (its outcome is set when it ends) or raises Busy/ShuttingDown."""

    def cancel(self, job: Job) -> None:
        """Drops the job's queued runs and kills its running ones."""
