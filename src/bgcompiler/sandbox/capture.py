"""A run's output as it arrives: the program's bytes told apart from the helper's marks.

Each stream carries the program's output, then the helper's trailer (measure.py):
- stdout: the end mark `\\x1e<nonce>\\n` once the program has been reaped. A compile stage's
  stdout goes on after it with `\\x1d<nonce>` and a tar of its work directory (artifacts).
- stderr: the record `\\x1e<nonce> <figures>\\n`.

The program cannot write a mark (it never sees the nonce), so the first byte past the cap
that cannot begin the expected mark is the program's own: its run is over the output limit
at that very byte, on either stream. Only bytes that could still be the start of a mark
(`pending`) get a moment's grace: the helper writes each mark in one write, so the rest of
a real mark follows at once.

An interactive run takes the program's bytes as they become certain (`fresh`): all but an
end that could still begin the mark, and never past the cap.

Nothing is ever refused: past its room a stream's bytes are counted and dropped. So the
connection can be read to its end after a kill, which the engine needs (a container's exit
waits until its output has been delivered to every attached client).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from bgcompiler.sandbox.attach import STDERR, STDOUT
from bgcompiler.sandbox.measure import Measurement, end_mark, parse_record, record_mark
from bgcompiler.sandbox.payload import ARTIFACTS_MARK

# The helper's record is about 100 bytes; room is kept for it beyond the cap.
RECORD_ROOM = 160


class Trailer(enum.Enum):
    """What follows the program's output on a stream."""

    END_MARK = "end mark"  # a run's stdout: exactly the mark; later bytes are the program's
    RECORD = "record"  # stderr: the mark, figures, a newline; later bytes are the program's
    ARTIFACTS = "artifacts"  # a compile stage's stdout: the mark, then everything is ours


@dataclass(slots=True)
class StreamCapture:
    """One stream: the bytes kept (up to `room`), how many were dropped, and the trailer."""

    cap: int
    mark: bytes
    trailer: Trailer
    room: int
    kept: bytearray = field(default_factory=bytearray)
    dropped: int = 0
    mark_at: int | None = None  # where the helper's mark begins, once seen whole
    trailer_end: int | None = None  # where the trailer ends (None: not yet, or never)
    taken: int = 0  # how many of the program's bytes `fresh` has handed out

    def feed(self, data: bytes) -> int:
        """Takes a frame's bytes; returns how many of them were kept."""
        before = len(self.kept)
        fits = max(0, self.room - before)
        self.kept += data[:fits]
        self.dropped += max(0, len(data) - fits)
        if self.mark_at is None:
            at = self.kept.find(self.mark, max(0, before - len(self.mark) + 1))
            if at >= 0:
                self.mark_at = at
        if self.mark_at is not None and self.trailer_end is None:
            self._find_trailer_end(before)
        return min(fits, len(data))

    def _find_trailer_end(self, searched_up_to: int) -> None:
        assert self.mark_at is not None
        if self.trailer is Trailer.END_MARK:
            self.trailer_end = self.mark_at + len(self.mark)
        elif self.trailer is Trailer.RECORD:
            start = max(self.mark_at + len(self.mark), searched_up_to)
            newline = self.kept.find(b"\n", start)
            if newline >= 0:
                self.trailer_end = newline + 1

    @property
    def trailer_complete(self) -> bool:
        return self.trailer_end is not None

    def partial_mark(self) -> int:
        """Length of the longest end of `kept` that could be the start of the mark."""
        if self.mark_at is not None:
            return 0
        for length in range(min(len(self.mark) - 1, len(self.kept)), 0, -1):
            if self.kept.endswith(self.mark[:length]):
                return length
        return 0

    def program_bytes(self, *, final: bool) -> int:
        """How many bytes the program wrote on this stream, as far as is known.

        While the run goes on (`final=False`), an end that could be the start of the mark
        is not counted yet; once it is over, whatever did not become a mark was the program's.
        """
        total = len(self.kept) + self.dropped
        if self.mark_at is None:
            return total - (0 if final else self.partial_mark())
        if self.trailer is Trailer.ARTIFACTS:
            return self.mark_at
        end = self.trailer_end if self.trailer_end is not None else len(self.kept)
        return total - (end - self.mark_at)

    def over(self, *, final: bool) -> bool:
        return self.program_bytes(final=final) > self.cap

    def program_span(self, start: int, end: int) -> int:
        """How many of the program's output bytes (as `program_output` gives them) lie in
        kept[start:end]: the trailer is not the program's, and past the cap is not kept."""
        if self.mark_at is None:
            pieces = [(start, end, 0)]
        elif self.trailer is Trailer.ARTIFACTS:
            pieces = [(start, min(end, self.mark_at), 0)]
        else:
            trailer_end = self.trailer_end if self.trailer_end is not None else len(self.kept)
            shift = trailer_end - self.mark_at  # program offsets after the trailer move back
            pieces = [
                (start, min(end, self.mark_at), 0),
                (max(start, trailer_end), end, shift),
            ]
        count = 0
        for low, high, moved in pieces:
            low, high = low - moved, min(high - moved, self.cap)
            count += max(0, high - low)
        return count

    def program_output(self) -> bytes:
        """The program's own bytes kept on this stream, at most the cap."""
        kept = bytes(self.kept)
        if self.mark_at is None:
            return kept[: self.cap]
        if self.trailer is Trailer.ARTIFACTS:
            return kept[: min(self.mark_at, self.cap)]
        end = self.trailer_end if self.trailer_end is not None else len(kept)
        return (kept[: self.mark_at] + kept[end:])[: self.cap]

    def fresh(self, *, final: bool) -> bytes:
        """The program's bytes (at most the cap in all) not handed out before: those known
        to be the program's so far, or, once the run is over (`final`), all of them."""
        if self.mark_at is None:
            known = len(self.kept) - (0 if final else self.partial_mark())
            end = min(self.cap, known)
            start, self.taken = self.taken, max(self.taken, end)
            return bytes(self.kept[start:end])
        # Past the mark: what program_output gives, from where the last call stopped.
        output = self.program_output()
        if not final and self.trailer is not Trailer.ARTIFACTS and self.trailer_end is None:
            output = output[: self.mark_at]  # the trailer's end is not in yet
        start, self.taken = self.taken, max(self.taken, len(output))
        return output[start:]

    def trailer_bytes(self) -> bytes:
        """The helper's trailer (mark included), as far as it was kept."""
        if self.mark_at is None:
            return b""
        end = self.trailer_end if self.trailer_end is not None else len(self.kept)
        return bytes(self.kept[self.mark_at : end])


@dataclass(frozen=True, slots=True)
class Collected:
    """What a finished capture holds, taken apart: the program's output and the helper's."""

    stdout: bytes
    stderr: bytes
    truncated: bool  # the program wrote more than the cap on a stream
    measurement: Measurement | None
    artifacts: bytes | None  # a successful compile stage's tar, when it fit
    artifacts_over: bool  # a compile stage's files did not fit in their room
    # The order the program's bytes arrived in, across the two streams: (stream, byte
    # count) pieces that add up to `stdout` and `stderr` (what Piston calls `output`).
    interleaving: tuple[tuple[int, int], ...] = ()
    over_stream: int | None = None  # the stream that passed the cap (STDOUT or STDERR)


class Capture:
    """The output of one run, as it arrives."""

    def __init__(self, cap: int, nonce: str, *, artifact_bytes: int | None = None) -> None:
        self.cap = cap
        self._nonce = nonce
        mark = end_mark(nonce)
        compile_stage = artifact_bytes is not None
        stdout_room = cap + len(mark)
        if compile_stage:
            assert artifact_bytes is not None
            stdout_room += len(self._artifacts_mark) + artifact_bytes
        self.streams = {
            STDOUT: StreamCapture(
                cap, mark, Trailer.ARTIFACTS if compile_stage else Trailer.END_MARK, stdout_room
            ),
            STDERR: StreamCapture(cap, record_mark(nonce), Trailer.RECORD, cap + RECORD_ROOM),
        }
        self._compile_stage = compile_stage
        self.stalled = False  # a possible mark past the cap never went on: it was the program's
        self._arrivals: list[tuple[int, int, int]] = []  # (stream, start, end) in its `kept`

    @property
    def _artifacts_mark(self) -> bytes:
        return ARTIFACTS_MARK + self._nonce.encode("ascii")

    def feed(self, kind: int, data: bytes) -> None:
        stream = self.streams.get(kind)
        if stream is None:  # anything else is not an output stream: ignored
            return
        start = len(stream.kept)
        kept = stream.feed(data)
        if kept:
            last = self._arrivals[-1] if self._arrivals else None
            if last is not None and last[0] == kind and last[2] == start:
                self._arrivals[-1] = (kind, last[1], start + kept)
            else:
                self._arrivals.append((kind, start, start + kept))

    def fresh(self, *, final: bool = False) -> list[tuple[int, bytes]]:
        """The program's bytes that arrived since the last call, by stream (see
        StreamCapture.fresh); `final` once nothing more will arrive."""
        taken = []
        for kind, stream in self.streams.items():
            data = stream.fresh(final=final)
            if data:
                taken.append((kind, data))
        return taken

    @property
    def over(self) -> bool:
        """The program has certainly passed the cap on a stream (or its files their room)."""
        return (
            self.stalled
            or any(stream.over(final=False) for stream in self.streams.values())
            or self._artifacts_over
        )

    @property
    def pending(self) -> bool:
        """Past the cap, a stream ends in what may be the start of the helper's mark."""
        return any(
            stream.partial_mark() and stream.over(final=True) for stream in self.streams.values()
        )

    @property
    def complete(self) -> bool:
        """Both of the helper's marks are in: the program has ended and its output is all
        here (a compile stage's stdout goes on after its mark: it ends with the stream)."""
        return not self._compile_stage and all(
            stream.trailer_complete for stream in self.streams.values()
        )

    @property
    def _artifacts_over(self) -> bool:
        stdout = self.streams[STDOUT]
        return self._compile_stage and stdout.mark_at is not None and stdout.dropped > 0

    def collected(self) -> Collected:
        stdout, stderr = self.streams[STDOUT], self.streams[STDERR]
        record = stderr.trailer_bytes() if stderr.trailer_complete else b""
        measurement = parse_record(record[len(stderr.mark) :]) if record else None
        artifacts = None
        if self._compile_stage and stdout.mark_at is not None and not self._artifacts_over:
            after = bytes(stdout.kept[stdout.mark_at + len(stdout.mark) :])
            if after.startswith(self._artifacts_mark):
                artifacts = after[len(self._artifacts_mark) :]
        over_stream = next(
            (kind for kind, stream in self.streams.items() if stream.over(final=True)), None
        )
        return Collected(
            stdout=stdout.program_output(),
            stderr=stderr.program_output(),
            interleaving=self._interleaving(),
            truncated=over_stream is not None,
            over_stream=over_stream,
            measurement=measurement,
            artifacts=artifacts,
            artifacts_over=self._artifacts_over,
        )

    def _interleaving(self) -> tuple[tuple[int, int], ...]:
        pieces: list[tuple[int, int]] = []
        for kind, start, end in self._arrivals:
            count = self.streams[kind].program_span(start, end)
            if not count:
                continue
            if pieces and pieces[-1][0] == kind:
                pieces[-1] = (kind, pieces[-1][1] + count)
            else:
                pieces.append((kind, count))
        return tuple(pieces)
