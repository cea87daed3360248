"""Judge0's information about the machine and its submissions: GET /system_info (lscpu's
lines, then the memory and swap totals) and GET /statistics (cached for ten minutes, as in
Judge0)."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bgcompiler.api.judge0_plan import Submission
from bgcompiler.api.judge0_render import result_of
from bgcompiler.api.judge0_wire import STATUSES
from bgcompiler.languages import Language
from bgcompiler.store.jobs import JobStore

STATISTICS_CACHE_S = 600.0
_system: dict[str, str] | None = None


async def system_info() -> dict[str, str]:
    """lscpu's `key: value` lines in its order, then `Mem` and `Swap` (totals, as `free -h`
    prints them). Read once: the machine does not change under a running service."""
    global _system
    if _system is None:
        info: dict[str, str] = {}
        try:
            process = await asyncio.create_subprocess_exec(
                "lscpu",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env={"LC_ALL": "C"},
            )
            output, _ = await process.communicate()
        except OSError:
            output = b""
        for line in output.decode(errors="replace").splitlines():
            key, colon, rest = line.partition(":")
            if colon:
                info[key.strip()] = rest.split(":", 1)[0].strip()
        meminfo = _meminfo()
        info["Mem"] = _human(meminfo.get("MemTotal", 0))
        info["Swap"] = _human(meminfo.get("SwapTotal", 0))
        _system = info
    return _system


def _meminfo() -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            found[key] = int(rest.split()[0]) if rest.split() else 0
    except (OSError, ValueError):
        pass
    return found


def _human(kib: int) -> str:
    """A size as `free -h` prints it: 7.7Gi, 913Mi, 0B."""
    size = float(kib) * 1024
    for unit in ("B", "Ki", "Mi", "Gi", "Ti"):
        if size < 1024 or unit == "Ti":
            return f"{size:.1f}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    raise AssertionError("unreachable")


class Statistics:
    """GET /statistics, computed from the store at most every ten minutes."""

    def __init__(self) -> None:
        self._cached: dict[str, Any] | None = None
        self._until = 0.0

    async def get(
        self, store: JobStore, languages: Mapping[int, Language], *, fresh: bool
    ) -> dict[str, Any]:
        if fresh or self._cached is None or time.time() >= self._until:
            self._cached = await self._compute(store, languages)
            self._until = time.time() + STATISTICS_CACHE_S
        return self._cached

    async def _compute(self, store: JobStore, languages: Mapping[int, Language]) -> dict[str, Any]:
        now = datetime.datetime.now(tz=datetime.UTC)
        today = now.date()
        days = [today - datetime.timedelta(days=back) for back in range(1, 31)]
        per_day: Counter[datetime.date] = Counter()
        per_language: Counter[int] = Counter()
        per_status: Counter[int] = Counter()
        rows = await store.of_api("judge0")
        for row in rows:
            if row.request is None:
                continue
            submission = Submission.from_json(row.request)
            per_day[datetime.datetime.fromtimestamp(row.created_at, tz=datetime.UTC).date()] += 1
            per_language[submission.language_id] += 1
            per_status[result_of(row, submission).status_id] += 1

        def name(language_id: int) -> str | None:
            language = languages.get(language_id)
            return language.judge0.name if language and language.judge0 else None

        until = now + datetime.timedelta(seconds=STATISTICS_CACHE_S)
        return {
            "created_at": _datetime(now),
            "cached_until": _datetime(until),
            "submissions": {
                "total": len(rows),
                "today": per_day[today],
                "last_30_days": {day.isoformat(): per_day[day] for day in days},
            },
            "languages": [
                {"language": {"id": language_id, "name": name(language_id)}, "count": count}
                for language_id, count in per_language.most_common()
            ],
            "statuses": [
                {"status": {"id": status_id, "name": STATUSES[status_id]}, "count": count}
                for status_id, count in per_status.most_common()
            ],
            "database": {"size_pretty": None, "size_in_bytes": None},
        }


def _datetime(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+00:00"


STATISTICS = Statistics()
