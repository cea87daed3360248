"""An interactive run's pieces without an engine: the program's bytes streamed as they become
certain (never a mark, never past the cap), the frames the helper reads, the channel's
rules for input and signals, and Piston's signal names."""

from __future__ import annotations

import asyncio
import io
import tarfile

import pytest

from bgcompiler.api.piston_ws import SIGNAL_NUMBERS, SIGNALS, _piston_signal
from bgcompiler.models import SandboxFile
from bgcompiler.sandbox.attach import STDERR, STDOUT
from bgcompiler.sandbox.capture import Capture
from bgcompiler.sandbox.live import Live
from bgcompiler.sandbox.measure import end_mark, record_mark
from bgcompiler.sandbox.payload import (
    LIVE_NAME,
    STDIN_NAME,
    build_payload,
    eof_frame,
    signal_frame,
    stdin_frame,
)

NONCE = "0123456789abcdef0123456789abcdef"
END = end_mark(NONCE)
RECORD = record_mark(NONCE) + b"1500000 1200 300 2048 0 0\n"


def streamed(capture: Capture, *frames: tuple[int, bytes]) -> list[tuple[int, bytes]]:
    out = []
    for kind, data in frames:
        capture.feed(kind, data)
        out.extend(capture.fresh())
    out.extend(capture.fresh(final=True))
    return out


def test_each_frame_of_program_output_is_handed_out_at_once_and_marks_never() -> None:
    """Bytes are handed out frame by frame, in order; the helper's end mark and record are
    not, and bytes an orphan wrote after the mark still are."""
    capture = Capture(1024, NONCE)
    out = streamed(
        capture,
        (STDOUT, b"one\n"),
        (STDERR, b"warn\n"),
        (STDOUT, b"two\n" + END),
        (STDERR, RECORD),
    )
    assert out == [(STDOUT, b"one\n"), (STDERR, b"warn\n"), (STDOUT, b"two\n")]


def test_an_end_that_could_begin_the_mark_waits_for_the_next_bytes() -> None:
    """A chunk ending in what could be the start of the end mark holds those bytes back
    until the next chunk shows they were the program's."""
    capture = Capture(1024, NONCE)
    capture.feed(STDOUT, b"abc" + END[:5])
    assert capture.fresh() == [(STDOUT, b"abc")]
    capture.feed(STDOUT, b"x")
    assert capture.fresh() == [(STDOUT, END[:5] + b"x")]


def test_what_looked_like_a_mark_at_the_end_is_the_programs_once_final() -> None:
    """At the end of the run, bytes held back as a possible mark are handed out."""
    capture = Capture(1024, NONCE)
    capture.feed(STDOUT, b"abc" + END[:5])
    capture.fresh()
    assert capture.fresh(final=True) == [(STDOUT, END[:5])]


def test_nothing_past_the_cap_is_handed_out() -> None:
    """Of a stream that passes its cap, exactly the cap's bytes are handed out in all."""
    capture = Capture(10, NONCE)
    out = streamed(capture, (STDOUT, b"0123456"), (STDOUT, b"789abcdef"), (STDOUT, b"more"))
    assert b"".join(data for _, data in out) == b"0123456789"
    assert capture.over


def test_a_compile_stages_files_are_not_output() -> None:
    """A compile stage's stdout after its mark (the tar of its files) is never handed out."""
    capture = Capture(1024, NONCE, artifact_bytes=4096)
    out = streamed(capture, (STDOUT, b"note\n" + END + b"\x1d" + NONCE.encode() + b"TAR"))
    assert out == [(STDOUT, b"note\n")]


def test_a_live_archive_has_no_stdin_file_and_ends_on_a_record() -> None:
    """An interactive run's archive marks itself live instead of carrying stdin, and ends
    on a whole record, where the helper stops reading it."""
    payload = build_payload([SandboxFile("a", b"x")], None, NONCE, "cat")
    assert len(payload) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(payload)) as archive:
        names = archive.getnames()
    assert LIVE_NAME in names
    assert STDIN_NAME not in names


def test_frames_are_type_nonce_length_and_bytes() -> None:
    """Data, end of input and signals as the helper reads them, each with the nonce."""
    nonce = NONCE.encode()
    assert stdin_frame(NONCE, b"hi") == b"d" + nonce + b"\x00\x00\x00\x02hi"
    assert eof_frame(NONCE) == b"e" + nonce + b"\x00\x00\x00\x00"
    assert signal_frame(NONCE, 15) == b"s" + nonce + b"\x00\x00\x00\x01\x0f"


class _Stream:
    """Collects what a Live feeder sends."""

    def __init__(self) -> None:
        self.sent = bytearray()

    async def send(self, data: bytes) -> bool:
        self.sent += data
        return True


async def _fed(live: Live, *, takes_stdin: bool) -> bytes:
    stream = _Stream()
    feeder = asyncio.create_task(live.feed(stream, b"ARCHIVE", NONCE, takes_stdin=takes_stdin))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    feeder.cancel()
    await asyncio.gather(feeder, return_exceptions=True)
    return bytes(stream.sent)


async def test_input_typed_during_a_compile_is_the_runs() -> None:
    """A compile stage's input is closed at once and takes none of the input typed, which
    the run stage then gets in order, with its end."""
    stages: list[str] = []
    live = Live(lambda kind, data: None, lambda: stages.append("stage"))
    live.begin()
    live.write(b"first ")
    compile_sent = await _fed(live, takes_stdin=False)
    live.end()
    assert compile_sent == b"ARCHIVE" + eof_frame(NONCE)
    live.write(b"second", eof=True)
    live.begin()
    run_sent = await _fed(live, takes_stdin=True)
    frames = stdin_frame(NONCE, b"first ") + stdin_frame(NONCE, b"second") + eof_frame(NONCE)
    assert run_sent == b"ARCHIVE" + frames
    assert stages == ["stage", "stage"]


async def test_a_signal_is_for_the_running_stage_only() -> None:
    """With no stage running a signal is dropped; while one runs it is sent."""
    live = Live(lambda kind, data: None, lambda: None)
    assert not live.signal(15)
    live.begin()
    assert live.signal(15)
    assert (await _fed(live, takes_stdin=True)).endswith(signal_frame(NONCE, 15))


@pytest.mark.parametrize(
    ("number", "name"),
    [
        (1, "SIGHUP"),
        (9, "SIGKILL"),
        (31, "SIGSYS"),
        (34, "SIGRTMIN"),
        (35, "SIGRTMIN+1"),
        (49, "SIGRTMIN+15"),
        (50, "SIGRTMAX-14"),
        (63, "SIGRTMAX-1"),
        (64, "SIGRTMAX"),
    ],
)
def test_signal_names_are_pistons(number: int, name: str) -> None:
    """Piston's table: 1-31 by name, 34-64 as SIGRTMIN+n and SIGRTMAX-n, no 32 or 33."""
    assert SIGNALS[number] == name
    assert SIGNAL_NUMBERS[name] == number
    assert 32 not in SIGNALS
    assert 33 not in SIGNALS
    assert len(SIGNALS) == 62


def test_an_exit_signal_is_named_as_piston_names_it() -> None:
    """The name a run reports (Python's, or SIGnn for a number it has none for) is
    Piston's."""
    assert _piston_signal("SIGTERM") == "SIGTERM"
    assert _piston_signal("SIG35") == "SIGRTMIN+1"
    assert _piston_signal(None) is None
