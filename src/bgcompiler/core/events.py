"""What a job emits as it goes: a compile finished, a run finished, the job finished."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from bgcompiler.core.outcome import Outcome, RunRecord
from bgcompiler.core.plan import EXACT_JSON
from bgcompiler.models import RunResult


@dataclass(frozen=True, slots=True)
class JobStarted:
    """The job began on a worker (again, if an earlier attempt was interrupted)."""

    __pydantic_config__ = EXACT_JSON

    image_id: str
    kind: Literal["started"] = "started"


@dataclass(frozen=True, slots=True)
class CompileFinished:
    __pydantic_config__ = EXACT_JSON

    result: RunResult
    kind: Literal["compile"] = "compile"


@dataclass(frozen=True, slots=True)
class RunFinished:
    __pydantic_config__ = EXACT_JSON

    record: RunRecord
    kind: Literal["run"] = "run"


@dataclass(frozen=True, slots=True)
class JobFinished:
    __pydantic_config__ = EXACT_JSON

    outcome: Outcome
    kind: Literal["done"] = "done"


Event = JobStarted | CompileFinished | RunFinished | JobFinished
_EVENT: TypeAdapter[Event] = TypeAdapter(
    Annotated[JobStarted | CompileFinished | RunFinished | JobFinished, Field(discriminator="kind")]
)


def event_to_json(event: Event) -> bytes:
    return _EVENT.dump_json(event)


def event_from_json(data: bytes | str) -> Event:
    return _EVENT.validate_json(data)
