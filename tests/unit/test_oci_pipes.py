"""The OCI engine's stdio pipes on the loop the service runs (uvloop): output in frames by
stream, stdin delivered, and each descriptor closed exactly once."""

from __future__ import annotations

import asyncio
import gc
import os

import uvloop

from bgcompiler.models import STDERR, STDOUT
from bgcompiler.sandbox.oci.pipes import PipeStream


def test_output_frames_stdin_and_each_descriptor_closed_once() -> None:
    """Frames come by stream; stdin is delivered and closed. Then the numbers the stream
    had are reused by new files, and none of those is closed under its owner when the
    stream is collected (uvloop's pipe transports closed a number twice: libuv, then the
    file object)."""

    async def scenario() -> None:
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        stream = PipeStream(stdin_write, stdout_read, stderr_read)
        os.write(stdout_write, b"out")
        os.write(stderr_write, b"err")
        for fd in (stdout_write, stderr_write):
            os.close(fd)
        frames = []
        while (frame := await stream.read_frame()) is not None:
            frames.append(frame)
        assert sorted(frames) == [(STDOUT, b"out"), (STDERR, b"err")]
        await stream.send_stdin(b"in")
        assert os.read(stdin_read, 10) == b"in"
        assert os.read(stdin_read, 10) == b""  # closed after delivery
        await stream.ended()
        owned = {stdin_write, stdout_read, stderr_read}
        # The lowest free numbers (the stream's, and the write ends closed above), now others'.
        reused = [os.open("/dev/null", os.O_RDONLY) for _ in range(len(owned) + 2)]
        assert owned <= set(reused)
        stream.close()  # as the end of a run does: nothing is left for it to close
        del stream
        gc.collect()
        await asyncio.sleep(0.01)
        for fd in reused:
            os.fstat(fd)  # EBADF if the stream closed it a second time
            os.close(fd)
        os.close(stdin_read)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


def test_a_send_blocked_on_a_full_pipe_ends_when_the_stream_closes() -> None:
    """A program that never reads its stdin: the pipe fills, the send waits, and closing
    the stream (the run is over) ends the wait with False rather than leaving it hung."""

    async def scenario() -> None:
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        stream = PipeStream(stdin_write, stdout_read, stderr_read)
        sending = asyncio.ensure_future(stream.send(b"x" * (4 << 20)))
        await asyncio.sleep(0.05)
        assert not sending.done()
        stream.close()
        assert await asyncio.wait_for(sending, 5) is False
        for fd in (stdout_write, stderr_write, stdin_read):
            os.close(fd)
        await asyncio.wait_for(stream.ended(), 5)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
