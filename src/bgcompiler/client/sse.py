"""Server-Sent Events: lines in, events out (the subset of the spec the service sends:
`id`, `event`, `data`, comments; `retry` is ignored: the client has its own policy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RawEvent:
    id: str | None
    event: str
    data: str


class SseParser:
    """Fed one line at a time (without its line ending); returns an event at each blank
    line that ends one. Comments (`: ping`, the keep-alives) and unknown fields are skipped."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._id: str | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> RawEvent | None:
        if line == "":
            if not self._data and not self._event:
                return None
            event = RawEvent(self._id, self._event or "message", "\n".join(self._data))
            self._reset()
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None
