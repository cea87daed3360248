"""Service settings: built once (flags > env `BGC_*` > defaults), frozen, passed in."""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_ORIGIN = re.compile(r"https?://[^/\s]+")


def default_workers() -> int:
    """The seed's default: two fewer than the CPUs, but never below two."""
    return max((os.cpu_count() or 1) - 2, 2)


class Settings(BaseSettings):
    """Everything the service can be told. Field names are the CLI flags' names."""

    model_config = SettingsConfigDict(env_prefix="BGC_", frozen=True, extra="forbid")

    # The seed's flags, with the seed's defaults.
    backlog: int = Field(2000, ge=0, description="runs that may wait for a worker")
    memory: int = Field(512, ge=6, description="memory per container, MB (swap equal)")
    cpu: int = Field(1024, ge=2, description="CPU shares per container (a weight)")
    output: int = Field(30, ge=1, description="KB kept of each of stdout and stderr")
    timeout: float = Field(30, gt=0, description="seconds before a run is killed")
    workers: int = Field(default_factory=default_workers, ge=1, description="concurrent runs")
    port: int = Field(8080, ge=0, le=65535)
    gvisor: bool = Field(False, description="run containers under gVisor")
    verbose: bool = False

    # Our additions.
    host: str = "127.0.0.1"
    runtime: str = Field("runsc", min_length=1, description="runtime that --gvisor selects")
    engine: Literal["docker", "oci"] = Field(
        "docker",
        description="start containers through dockerd, or with runc/runsc straight from an OCI "
        "bundle (images still come from the local Docker store)",
    )
    max_count: int = Field(100, ge=1, description="largest count a request may ask for")
    pids: int = Field(64, ge=8, description="processes and threads per container")
    disk: int = Field(64, ge=1, description="MB for each of the writable /bg and /tmp")
    cpus: float = Field(1.0, gt=0, description="hard CPU cap per container, in CPUs")
    max_body: int = Field(1024, ge=1, description="largest request body, KB")
    shutdown_grace: float = Field(
        10, ge=0, description="seconds runs may go on after SIGTERM before they are killed"
    )
    engine_timeout: float = Field(
        2,
        gt=0,
        description="seconds a quick Engine API call (ping, inspect) may take before the engine "
        "counts as down; calls that do work (create, start, kill, wait, remove) get five "
        "times as long",
    )
    client_timeout: float = Field(
        15, gt=0, description="seconds a client may take to send a whole request"
    )
    docker_host: str | None = Field(
        None, description="Engine address; default DOCKER_HOST or the local socket"
    )
    check_image: str = Field(
        "bgc/busybox:latest", description="image used at start-up to prove the gVisor runtime works"
    )
    helper: str | None = Field(
        None, description="the bgc-run helper binary; default: built once from our C source"
    )
    cache_dir: str = Field(
        default_factory=lambda: os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bg-compiler"
        ),
        description="where the built helper is kept",
    )
    artifacts: int = Field(64, ge=1, description="MB a compile stage may hand to its runs")
    pool: int | None = Field(
        None,
        ge=0,
        description="containers kept started ahead of demand, all keys together; "
        "default twice --workers; 0 turns the warm pool off",
    )
    pool_idle: float = Field(
        60,
        gt=0,
        description="seconds a warm container's kind may go unused before its containers "
        "are removed",
    )
    languages: str | None = Field(
        None, description="the language registry (TOML); default: the one shipped"
    )
    pin_cpus: bool = Field(
        True,
        description="pin each worker's runs to a CPU of its own when there is one to spare",
    )
    state_dir: str = Field(
        "/run/bg-compiler", description="where live instances keep their lock files"
    )
    data_dir: str = Field(
        default_factory=lambda: os.path.join(
            os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"),
            "bg-compiler",
        ),
        description="where the embedded job store (SQLite) lives",
    )
    database_url: str | None = Field(
        None, description="a PostgreSQL job store (postgresql://user@host:port/db)"
    )
    retention_days: float = Field(
        7, gt=0, description="days a finished job is kept before it is purged"
    )
    keepalive: float = Field(
        15, gt=0, le=300, description="seconds between keep-alive comments on an idle event stream"
    )
    webhook_secret: str | None = Field(
        None, min_length=1, description="the HMAC key that signs callbacks; none: no callbacks"
    )
    webhook_retries: int = Field(5, ge=0, description="retries of a failed callback")
    webhook_allow_private: bool = Field(
        False, description="allow callbacks to loopback, private and link-local addresses"
    )
    cors_origin: tuple[str, ...] = Field(
        (), description="origins whose pages may call the API from a browser; none: CORS off"
    )
    require_api_key: bool = Field(
        False,
        description="every route but liveness, readiness and the docs needs an API key "
        "(bg-compiler keys create); each key's runs are rate limited and counted per day",
    )
    log_format: Literal["console", "json"] = Field(
        "console", description="log lines as key=value text or as one JSON object each"
    )
    log_json: bool = Field(
        False, description="BGC_LOG_JSON=1: the same as --log-format json, which wins if given"
    )
    queue_url: str | None = Field(
        None,
        description="distributed mode: the job queue (redis://host:port/db); `start` then runs "
        "an API node and `worker` a worker node (both need a PostgreSQL --database-url)",
    )
    visibility_timeout: float = Field(
        30,
        ge=1,
        description="distributed mode: seconds a silent worker keeps its jobs before they "
        "are taken over",
    )
    max_attempts: int = Field(
        3, ge=1, description="distributed mode: attempts of a job whose workers vanish"
    )
    worker_id: str | None = Field(
        None, min_length=1, max_length=64, description="a worker's name [host-pid-random]"
    )

    @field_validator("cors_origin")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        # A browser's Origin header is scheme://host[:port], never with a path or a final
        # slash: an origin written otherwise would silently never match.
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port]) nor *")
        return origins

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.output * 1024 > 64 * 1024 * 1024:
            raise ValueError("output must be at most 65536 KB")
        if self.queue_url is not None:
            if not self.queue_url.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError("queue_url must be a redis:// URL")
            if self.database_url is None:
                raise ValueError("queue_url needs a PostgreSQL database_url shared by all nodes")
        return self

    @property
    def json_logs(self) -> bool:
        """--log-format when given (flag or BGC_LOG_FORMAT), else BGC_LOG_JSON."""
        if "log_format" in self.model_fields_set:
            return self.log_format == "json"
        return self.log_json

    @property
    def runtime_name(self) -> str | None:
        """The runtime to ask the engine for; None means the engine's default (runc)."""
        return self.runtime if self.gvisor else None

    @property
    def pool_budget(self) -> int:
        return 2 * self.workers if self.pool is None else self.pool

    @property
    def output_bytes(self) -> int:
        return self.output * 1024

    @property
    def max_body_bytes(self) -> int:
        return self.max_body * 1024
