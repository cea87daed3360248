"""Telling the program's output from the helper's marks, byte by byte, at the cap."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from bgcompiler.models import RunResult, Status
from bgcompiler.sandbox.attach import STDERR, STDOUT
from bgcompiler.sandbox.capture import RECORD_ROOM, Capture
from bgcompiler.sandbox.measure import end_mark, record_mark
from bgcompiler.sandbox.payload import ARTIFACTS_MARK

NONCE = "0123456789abcdef0123456789abcdef"
CAP = 1024
END = end_mark(NONCE)
RECORD = record_mark(NONCE) + b"1500000 1200 300 2048 0 0\n"


def fed(*frames: tuple[int, bytes], artifact_bytes: int | None = None) -> Capture:
    capture = Capture(CAP, NONCE, artifact_bytes=artifact_bytes)
    for kind, data in frames:
        capture.feed(kind, data)
    return capture


@pytest.mark.parametrize("kind", [STDOUT, STDERR])
@pytest.mark.parametrize("extra", [1, 63, 159, RECORD_ROOM + 10])
def test_one_byte_past_the_cap_is_over_on_either_stream(kind: int, extra: int) -> None:
    """The first program byte past the cap makes the run over, whatever room is kept."""
    capture = fed((kind, b"a" * (CAP + extra)))
    assert capture.over
    assert not capture.pending
    collected = capture.collected()
    assert collected.truncated
    assert collected.over_stream == kind
    assert (collected.stdout if kind == STDOUT else collected.stderr) == b"a" * CAP


def test_the_stream_over_the_cap_is_named_even_when_the_other_is_as_long() -> None:
    """stdout at the cap exactly, stderr one byte past it: stderr is the one over."""
    collected = fed((STDOUT, b"o" * CAP), (STDERR, b"e" * (CAP + 1))).collected()
    assert (collected.stdout, collected.stderr) == (b"o" * CAP, b"e" * CAP)
    assert collected.over_stream == STDERR


@pytest.mark.parametrize("kind", [STDOUT, STDERR])
def test_exactly_the_cap_then_the_marks_is_complete_and_not_over(kind: int) -> None:
    """Cap bytes on a stream, then the helper's marks: the run ended within its limit."""
    capture = fed((kind, b"a" * CAP), (STDOUT, END), (STDERR, RECORD))
    assert not capture.over
    assert capture.complete
    collected = capture.collected()
    assert not collected.truncated
    assert (collected.stdout if kind == STDOUT else collected.stderr) == b"a" * CAP
    assert collected.measurement is not None
    assert collected.measurement.wall_ns == 1_500_000
    assert collected.measurement.exit_code == 0


def test_both_streams_at_the_cap_with_marks_split_across_frames() -> None:
    """Marks arriving in pieces, byte by byte, are still recognised, never counted as output."""
    frames = [(STDOUT, b"o" * CAP), (STDERR, b"e" * CAP)]
    frames += [(STDOUT, END[i : i + 1]) for i in range(len(END))]
    frames += [(STDERR, RECORD[i : i + 1]) for i in range(len(RECORD))]
    capture = Capture(CAP, NONCE)
    for kind, data in frames:
        capture.feed(kind, data)
        assert not capture.over, "a piece of a mark was taken for program output"
    assert capture.complete
    collected = capture.collected()
    assert (collected.stdout, collected.stderr) == (b"o" * CAP, b"e" * CAP)
    assert not collected.truncated


def test_a_possible_mark_past_the_cap_is_pending_until_it_goes_on() -> None:
    """Past the cap, `\\x1e` may begin the mark: pending, not over. A byte that breaks the
    mark makes it over at once."""
    capture = fed((STDOUT, b"a" * CAP + END[:5]))
    assert capture.pending
    assert not capture.over
    capture.feed(STDOUT, b"x")
    assert capture.over


def test_a_possible_mark_that_stalls_counts_as_the_programs_in_the_end() -> None:
    """A stalled `\\x1e` past the cap, once the run is over, was the program's: truncated."""
    capture = fed((STDOUT, b"a" * CAP + b"\x1e"))
    capture.stalled = True
    assert capture.over
    assert capture.collected().truncated


def test_a_forged_record_with_another_nonce_is_program_output() -> None:
    """Something shaped like the record but without the nonce is the program's stderr."""
    forged = b"\x1e" + b"f" * 32 + b" 1 1 1 1 0 0\n"
    capture = fed((STDERR, forged), (STDOUT, END), (STDERR, RECORD))
    collected = capture.collected()
    assert collected.stderr == forged
    assert collected.measurement is not None
    assert collected.measurement.user_us == 1200


def test_output_after_the_marks_is_the_programs() -> None:
    """An orphan writing after the helper's marks: its bytes count against the cap."""
    capture = fed((STDOUT, b"x" * 10 + END), (STDERR, RECORD), (STDOUT, b"y" * CAP))
    assert capture.over
    collected = capture.collected()
    assert collected.truncated
    assert collected.stdout == (b"x" * 10 + b"y" * CAP)[:CAP]


def test_bytes_past_the_room_are_counted_and_dropped_never_refused() -> None:
    """A flood is accepted frame after frame (the connection is read to its end), kept only
    up to the room, and stays over."""
    capture = Capture(CAP, NONCE)
    for _ in range(100):
        capture.feed(STDOUT, b"z" * 32768)
    stream = capture.streams[STDOUT]
    assert len(stream.kept) == CAP + len(END)
    assert stream.dropped == 100 * 32768 - len(stream.kept)
    assert capture.over
    capture.feed(STDERR, b"still kept")
    assert capture.collected().stderr == b"still kept"


def test_a_record_without_its_newline_gives_no_measurement() -> None:
    """A helper killed in the middle of its record: no figures, and the piece is not output."""
    capture = fed((STDERR, b"err\n" + RECORD[:-8]))
    collected = capture.collected()
    assert collected.measurement is None
    assert collected.stderr == b"err\n"
    assert not capture.complete


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_a_compile_stage_hands_on_its_archive_after_the_marks() -> None:
    """A compile stage's stdout: its own output, the end mark, the artifacts mark, a tar."""
    archive = tar_of({"main": b"\x7fELF"})
    artifacts = ARTIFACTS_MARK + NONCE.encode() + archive
    capture = fed(
        (STDOUT, b"compiling\n" + END),
        (STDERR, RECORD),
        (STDOUT, artifacts),
        artifact_bytes=len(archive),
    )
    assert not capture.complete  # a compile stage ends with its stream
    collected = capture.collected()
    assert collected.stdout == b"compiling\n"
    assert collected.artifacts == archive
    assert not collected.truncated
    assert not collected.artifacts_over


def test_a_compile_stages_files_over_their_room_are_over_but_not_truncated_output() -> None:
    """Files larger than --artifacts: over (killed), no archive, the output itself intact."""
    archive = tar_of({"big": b"b" * 4096})
    capture = fed(
        (STDOUT, b"ok\n" + END),
        (STDERR, RECORD),
        (STDOUT, ARTIFACTS_MARK + NONCE.encode() + archive),
        artifact_bytes=1024,
    )
    assert capture.over
    collected = capture.collected()
    assert collected.artifacts_over
    assert collected.artifacts is None
    assert not collected.truncated
    assert collected.stdout == b"ok\n"


def test_a_compile_stage_over_the_cap_is_over() -> None:
    """A compile stage's own output past the cap is over, as for a run."""
    capture = fed((STDOUT, b"w" * (CAP + 1)), artifact_bytes=1 << 20)
    assert capture.over


def test_a_signal_is_the_exit_code_a_shell_would_give() -> None:
    """The record's wait status of a SIGSEGV is exit code 139 and SIGSEGV by name."""
    status = 11  # WTERMSIG 11, not exited
    assert os.WIFSIGNALED(status)
    record = record_mark(NONCE) + f"1 2 3 4 {status} 0\n".encode()
    measurement = fed((STDERR, record)).collected().measurement
    assert measurement is not None
    assert measurement.exit_code == 139
    assert measurement.signal == "SIGSEGV"


def interleaved(capture: Capture) -> bytes:
    collected = capture.collected()
    result = RunResult(
        status=Status.OK,
        stdout=collected.stdout,
        stderr=collected.stderr,
        interleaving=collected.interleaving,
    )
    return result.output()


def test_the_output_interleaves_the_streams_in_arrival_order_without_the_marks() -> None:
    """Frames of both streams, the helper's marks among them (a record split across frames,
    program bytes after it): the interleaved output is the program's bytes in the order they
    came, and nothing of the trailers."""
    capture = fed(
        (STDOUT, b"a1"),
        (STDERR, b"e1"),
        (STDOUT, b"a2"),
        (STDOUT, b"a3"),
        (STDERR, b"e2" + RECORD[:10]),
        (STDERR, RECORD[10:] + b"e3"),
        (STDOUT, b"a4" + END),
    )
    assert interleaved(capture) == b"a1e1a2a3e2e3a4"
    assert capture.collected().interleaving == (
        (STDOUT, 2),
        (STDERR, 2),
        (STDOUT, 4),
        (STDERR, 4),
        (STDOUT, 2),
    )


def test_the_interleaved_output_stops_at_each_streams_cap() -> None:
    """Past the cap nothing is the output's: each stream's part ends at its cap, in order."""
    capture = fed(
        (STDERR, b"e" * 10), (STDOUT, b"o" * (CAP - 4)), (STDOUT, b"p" * 10), (STDERR, b"f" * CAP)
    )
    assert interleaved(capture) == b"e" * 10 + b"o" * (CAP - 4) + b"p" * 4 + b"f" * (CAP - 10)
