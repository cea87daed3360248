"""Piston v2's interactive WebSocket, `GET /api/v2/connect`: one job per connection, its
input typed live, its output streamed as the program writes it.

The messages, their checks and close codes are Piston's (engineer-man/piston, api/src/api/
v2.js); an `init` is checked and planned exactly as POST /api/v2/execute. Where Piston
drops a signal, keeps a job running for nobody, or lets output grow without end, this does
what Piston meant instead (docs/compatibility.md): a signal reaches the stage's program, a
close kills the job, and the server's output cap holds.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import signal
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from bgcompiler.api.admission import admit
from bgcompiler.api.piston_plan import PistonRuntime, build_plan, check_body
from bgcompiler.api.piston_render import stage
from bgcompiler.core.events import CompileFinished, Event, JobStarted, RunFinished
from bgcompiler.errors import BgcError
from bgcompiler.models import STDERR, STDOUT, RunResult, Status
from bgcompiler.sandbox.live import Live
from bgcompiler.scheduler import Job
from bgcompiler.services import Services

router = APIRouter(prefix="/api/v2", tags=["piston"])

# A connection with no `init` this long after it opened is closed (Piston: 1 s, checked once).
INIT_TIMEOUT_S = 1.0

# Piston's signal names (its globals.SIGNALS), by Linux number: 1-31, then 34-64.
_NAMES = (
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
)
SIGNALS: dict[int, str] = dict(enumerate(_NAMES, start=1))
SIGNALS.update({34: "SIGRTMIN", 64: "SIGRTMAX"})
SIGNALS.update({34 + k: f"SIGRTMIN+{k}" for k in range(1, 16)})
SIGNALS.update({64 - k: f"SIGRTMAX-{k}" for k in range(1, 15)})
SIGNAL_NUMBERS = {name: number for number, name in SIGNALS.items()}

_STREAMS = {STDOUT: "stdout", STDERR: "stderr"}


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


@router.websocket("/connect", name="piston_connect")
async def piston_connect(websocket: WebSocket) -> None:
    """Piston v2's interactive execution: `init`, then `data` and `signal` messages in;
    `runtime`, `stage`, `data`, `exit` and `error` messages out (docs/compatibility.md)."""
    await websocket.accept()
    await _Session(websocket, websocket.app.state.services).serve()


class _Session:
    """One connection: its job, and the one ordered queue of what is sent to the client."""

    def __init__(self, websocket: WebSocket, svc: Services) -> None:
        self._ws = websocket
        self._svc = svc
        self._outbox: asyncio.Queue[dict[str, Any] | _Close] = asyncio.Queue()
        self._closing = False
        self._initialized = False  # an `init` arrived (checked or being checked)
        self._job: Job | None = None
        self._live: Live | None = None
        self._runtime: PistonRuntime | None = None
        self._stages: list[str] = []
        self._stage = "run"
        self._decoders = {kind: _decoder() for kind in _STREAMS}
        self._finisher: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        """Until the client leaves or either side closes; then the job is ended."""
        sender = asyncio.create_task(self._send_all())
        receiver = asyncio.create_task(self._receive_all())
        timer = asyncio.create_task(self._init_timer())
        try:
            await asyncio.wait([sender, receiver], return_when=asyncio.FIRST_COMPLETED)
            if receiver.done() and self._closing:  # a close is queued: let it go out
                await asyncio.wait([sender])
        finally:
            self._cancel_job()
            for task in (sender, receiver, timer, self._finisher):
                if task is not None:
                    task.cancel()
            await asyncio.gather(
                sender, receiver, timer, *filter(None, [self._finisher]), return_exceptions=True
            )

    # --- to the client -------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        if not self._closing:
            self._outbox.put_nowait(message)

    def _close(self, code: int, reason: str) -> None:
        """Closes the connection after what is queued; a job still running is killed."""
        if self._closing:
            return  # as Piston's ws: closing a closing socket does nothing
        self._outbox.put_nowait(_Close(code, reason))
        self._closing = True
        self._cancel_job()

    def _fail(self, message: str) -> None:
        """Piston's answer to anything that went wrong: an error frame, then 4002."""
        self._send({"type": "error", "message": message})
        self._close(4002, "Notified Error")

    def _cancel_job(self) -> None:
        if self._job is not None and not self._job.outcome.done():
            self._svc.scheduler.cancel(self._job)

    async def _send_all(self) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                item = await self._outbox.get()
                if isinstance(item, _Close):
                    await self._ws.close(item.code, item.reason)
                    return
                # As JSON.stringify writes it: no spaces, characters as they are.
                text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
                await self._ws.send_text(text)

    async def _init_timer(self) -> None:
        await asyncio.sleep(INIT_TIMEOUT_S)
        if not self._initialized:
            self._close(4001, "Initialization Timeout")

    # --- from the client -----------------------------------------------------------------

    async def _receive_all(self) -> None:
        while not self._closing:
            received = await self._ws.receive()
            if received["type"] == "websocket.disconnect":
                return
            text = received.get("text")
            if text is None:
                text = (received.get("bytes") or b"").decode("utf-8", errors="replace")
            try:
                message = json.loads(text)
            except ValueError as exc:
                self._fail(str(exc))
                return
            if message is None:
                self._fail("Cannot read properties of null (reading 'type')")
                return
            if not isinstance(message, dict):
                continue  # Piston ignores what has no known type
            kind = message.get("type")
            if kind == "init":
                await self._init(message)
            elif kind == "data":
                await self._data(message)
            elif kind == "signal":
                self._signal(message)

    async def _init(self, message: dict[str, Any]) -> None:
        if self._initialized:
            self._close(4000, "Already Initialized")
            return
        self._initialized = True
        svc = self._svc
        try:
            checked = await check_body(svc, message, lambda runtime: svc.can_run(runtime.language))
            plan = await admit(self._ws, svc, build_plan(svc, checked))
            self._runtime = checked.runtime
            # Piston's input from `init` is discarded: a live job's input is what is typed.
            self._stages = ["compile", "run"] if plan.compile is not None else ["run"]
            self._live = Live(self._output, self._stage_started)
            job = Job(uuid.uuid4().hex, plan, sink=self._on_event, live=self._live)
            svc.scheduler.submit(job)  # busy: refused now, not queued for long
        except BgcError as exc:
            self._fail(exc.message)
            return
        self._job = job
        self._finisher = asyncio.create_task(self._finish(job))

    async def _data(self, message: dict[str, Any]) -> None:
        if self._live is None:
            self._close(4003, "Not yet initialized")
            return
        if message.get("stream") != "stdin":
            self._close(4004, "Can only write to stdin")
            return
        data = message.get("data")
        if not isinstance(data, str):
            self._fail("data must be a string")
            return
        # An extension of ours: `"eof": true` ends the program's input after `data`.
        self._live.write(_utf8(data), eof=message.get("eof") is True)
        await self._live.room()

    def _signal(self, message: dict[str, Any]) -> None:
        if self._live is None:
            self._close(4003, "Not yet initialized")
            return
        name = message.get("signal")
        number = SIGNAL_NUMBERS.get(name) if isinstance(name, str) else None
        if number is None:
            self._close(4005, "Invalid signal")
            return
        self._live.signal(number)  # with no stage running, nobody to signal: nothing

    # --- from the job ----------------------------------------------------------------------

    def _stage_started(self) -> None:
        self._stage = self._stages.pop(0) if self._stages else "run"
        self._decoders = {kind: _decoder() for kind in _STREAMS}
        self._send({"type": "stage", "stage": self._stage})

    def _output(self, kind: int, data: bytes) -> None:
        self._output_text(kind, self._decoders[kind].decode(data))

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, JobStarted) and self._runtime is not None:
            name = self._runtime.name
            self._send({"type": "runtime", "language": name.language, "version": name.version})
        elif isinstance(event, CompileFinished):
            self._exit("compile", event.result)
        elif isinstance(event, RunFinished):
            self._exit("run", event.record.result)

    def _exit(self, stage_name: str, result: RunResult) -> None:
        for kind, decoder in self._decoders.items():  # a character cut off at the end
            self._output_text(kind, decoder.decode(b"", final=True))
        if result.status is Status.INTERNAL_ERROR:
            self._fail(result.error or "internal error")
            return
        document = stage(result)
        self._send(
            {
                "type": "exit",
                "stage": stage_name,
                "code": document["code"],
                "signal": _piston_signal(document["signal"]),
            }
        )

    def _output_text(self, kind: int, text: str) -> None:
        if text:
            self._send({"type": "data", "stream": _STREAMS[kind], "data": text})

    async def _finish(self, job: Job) -> None:
        """After the last `exit`: 4999, or Piston's error answer if the job failed."""
        await asyncio.wait([job.outcome])
        if job.outcome.cancelled():
            return
        failure = job.outcome.exception()
        if failure is not None:
            self._fail(failure.message if isinstance(failure, BgcError) else str(failure))
        else:
            self._close(4999, "Job Completed")


def _decoder() -> codecs.IncrementalDecoder:
    """UTF-8 across chunks: a character split between two arrives whole."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def _utf8(text: str) -> bytes:
    """As Node writes a string: a lone surrogate becomes U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text).encode(
            "utf-8"
        )


def _piston_signal(name: str | None) -> str | None:
    """A signal by Piston's name for its number (SIGRTMIN+1, not SIG35)."""
    if name is None:
        return None
    if name.startswith("SIG") and name[3:].isdigit():
        return SIGNALS.get(int(name[3:]), name)
    try:
        return SIGNALS.get(signal.Signals[name].value, name)
    except KeyError:
        return name
