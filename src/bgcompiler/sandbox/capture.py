"""A run's output as it arrives: each stream kept up to its limit, and the helper's marks."""

from __future__ import annotations

from dataclasses import dataclass, field

from bgcompiler.sandbox.attach import STDERR, STDOUT
from bgcompiler.sandbox.payload import ARTIFACTS_MARK


@dataclass(slots=True)
class Capture:
    """Output of one run, each stream kept up to its own limit."""

    limits: dict[int, int]
    streams: dict[int, bytearray] = field(
        default_factory=lambda: {STDOUT: bytearray(), STDERR: bytearray()}
    )
    passed: bool = False  # a stream went past its limit
    # The helper's marks, once seen at the end of both streams, mean the program has ended
    # and all its output is here: no need to wait for the container to end as well.
    marks: dict[int, bytes] | None = None
    marked: set[int] = field(default_factory=set)

    def feed(self, kind: int, data: bytes) -> bool:
        """Keeps what fits; returns False once a stream went past its limit."""
        buffer = self.streams.get(kind)
        if buffer is None:  # not an output stream: ignore
            return True
        room = self.limits[kind] - len(buffer)
        if len(data) > room:
            buffer += data[:room]
            self.passed = True
            return False
        buffer += data
        if self.marks is not None and kind not in self.marked:
            mark = self.marks[kind]
            if buffer.find(mark, max(0, len(buffer) - len(data) - len(mark))) >= 0:
                self.marked.add(kind)
        return True

    @property
    def complete(self) -> bool:
        return self.marks is not None and len(self.marked) == len(self.marks)


def split_artifacts(stdout: bytes, nonce: str) -> tuple[bytes, bytes | None]:
    """A compile stage's own stdout, and the tar of its work directory that follows it."""
    mark = ARTIFACTS_MARK + nonce.encode("ascii")
    at = stdout.find(mark)
    if at < 0:
        return stdout, None
    return stdout[:at], stdout[at + len(mark) :]
