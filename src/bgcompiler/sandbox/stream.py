"""What a run's container is spoken to through: input in, (stream, bytes) frames out.

Docker's attach connection (attach.py) and the OCI engine's pipes (oci/pipes.py) both are
one; the run's logic (collect.py, live.py) works on either.
"""

from __future__ import annotations

from typing import Protocol


class RunStream(Protocol):
    async def send_stdin(self, data: bytes) -> None:
        """Writes all of `data` to the program's stdin, then closes it (not the output)."""

    async def send(self, data: bytes) -> bool:
        """Writes `data`, leaving stdin open; False once the container closed it or is gone."""

    async def read_frame(self) -> tuple[int, bytes] | None:
        """The next (stream, bytes), or None once the output has ended. Safe to cancel."""

    def close(self) -> None:
        """Stops reading and writing; what the container still writes is dropped."""
