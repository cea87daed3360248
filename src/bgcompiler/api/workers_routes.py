"""`GET /api/v1/workers`: the nodes that run jobs, what each can run and how busy it is.

In distributed mode, the live worker nodes (heard from within the visibility timeout); on
a single node, the node itself, in the same shape."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from bgcompiler.api.routes import services
from bgcompiler.cluster.api_node import Cluster
from bgcompiler.services import present_images

router = APIRouter(prefix="/api/v1", tags=["v1"])


class WorkerOut(BaseModel):
    id: str
    host: str
    runtimes: list[str] = Field(description="the runtimes its runs use (runc, runsc)")
    images: list[str] = Field(description="the images its engine has, of the registry's")
    capacity: int = Field(description="runs it executes at once")
    busy: int = Field(description="runs executing now")
    pool: dict[str, int | str] = Field(description="its warm pool and containers being removed")
    draining: bool = Field(description="stopping: it takes no new jobs")
    started_at: str
    last_heartbeat: str


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@router.get("/workers", summary="The nodes that run jobs", response_model=list[WorkerOut])
async def workers(request: Request) -> list[dict[str, Any]]:
    cluster: Cluster | None = getattr(request.app.state, "cluster", None)
    if cluster is not None:
        await cluster.refresh(force=True)
        return [
            {
                "id": worker.id,
                "host": worker.host,
                "runtimes": [worker.runtime],
                "images": list(worker.images),
                "capacity": worker.capacity,
                "busy": worker.busy,
                "pool": worker.pool,
                "draining": worker.draining,
                "started_at": _iso(worker.started_at),
                "last_heartbeat": _iso(worker.seen_at),
            }
            for worker in cluster.workers
        ]
    svc = services(request)
    images = await present_images(svc.sandbox, svc.languages)
    now = datetime.now(UTC).timestamp()
    return [
        {
            "id": "local",
            "host": socket.gethostname(),
            "runtimes": [svc.runtime],
            "images": list(images),
            "capacity": svc.scheduler.workers,
            "busy": svc.scheduler.busy_workers,
            "pool": svc.sandbox.status(),
            "draining": not svc.scheduler.accepting,
            "started_at": _iso(request.app.state.started_at),
            "last_heartbeat": _iso(now),
        }
    ]
