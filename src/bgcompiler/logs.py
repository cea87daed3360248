"""Log set-up: structlog, key=value lines on stderr, or one JSON object a line.

Context travels in structlog's contextvars: the request id is bound for the whole of a
request, a job's id for the whole of its job (on whichever worker runs it), and any key
bound the same way (a client's key name, say) lands on every line logged within.
In JSON, lines from the standard library's loggers (uvicorn's, the store's) go through the
same renderer, so a JSON log holds nothing but JSON lines.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from bgcompiler.models import RunResult

# Shared by structlog's own lines and the standard library's.
_COMMON: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso"),
]


def configure_logging(*, verbose: bool, json: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    renderer: structlog.typing.Processor
    chain: list[structlog.typing.Processor]
    if json:
        # A traceback becomes a field of its line rather than lines of its own.
        chain = [*_COMMON, structlog.processors.format_exc_info]
        renderer = structlog.processors.JSONRenderer()
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=chain,
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            )
        )
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        chain = list(_COMMON)
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    # Alembic names each of its plugins as it loads them, seven lines at every start: kept
    # for --verbose. (Which migrations ran is still said.)
    logging.getLogger("alembic.runtime.plugins").setLevel(level if verbose else logging.WARNING)
    structlog.configure(
        processors=[*chain, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def run_figures(result: RunResult) -> dict[str, Any]:
    """What the line of a finished run says: its status and its figures, never its output."""
    return {
        "status": result.status.value,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "duration_ms": result.duration_ms,
        "wall_ms": result.wall_ms,
        "cpu_ms": result.cpu_ms,
        "memory_kb": result.memory_kb,
    }
