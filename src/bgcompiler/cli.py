"""Command line: `bg-compiler start` (the seed's flags and ours), `bg-compiler images`,
`bg-compiler keys`, and the client commands `bg-compiler run` and `compare` (their logic in
bgcompiler.client).

Flags win over env vars `BGC_<FLAG>`, which win over defaults; only flags actually given
are passed to Settings, so the environment fills in the rest.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from bgcompiler.logs import configure_logging
from bgcompiler.settings import Settings

EXIT_STARTUP_FAILED = 3


def _settings_from(options: dict[str, Any]) -> Settings:
    # A repeatable flag not given is (), not None: the environment fills it in then too.
    given = {key: value for key, value in options.items() if value not in (None, ())}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
            for e in exc.errors()
        )
        raise click.UsageError(problems) from exc


@click.group()
@click.version_option(package_name="bg-compiler")
def main() -> None:
    """bg-compiler: run untrusted code in fresh containers over HTTP."""


@main.command()
@click.option("--backlog", type=int, help="Runs that may wait for a worker. [2000]")
@click.option("--memory", type=int, help="Memory per container, MB; swap is not allowed. [512]")
@click.option("--cpu", type=int, help="CPU shares per container (a weight). [1024]")
@click.option("--output", type=int, help="KB kept of each of stdout and stderr. [30]")
@click.option("--timeout", type=float, help="Seconds before a run is killed. [30]")
@click.option("--workers", type=int, help="Runs executed at once. [max(cpus-2, 2)]")
@click.option("--port", type=int, help="Listening port. [8080]")
@click.option("--gvisor", is_flag=True, default=None, help="Run containers under gVisor.")
@click.option(
    "--engine",
    type=click.Choice(["docker", "oci"]),
    help="Start containers through dockerd, or with runc/runsc straight from a bundle. [docker]",
)
@click.option("-v", "--verbose", is_flag=True, default=None, help="Debug logging.")
@click.option("--host", help="Listening address. [127.0.0.1]")
@click.option("--runtime", help="The runtime --gvisor selects. [runsc]")
@click.option("--max-count", type=int, help="Largest count a request may ask for. [100]")
@click.option("--pids", type=int, help="Processes and threads per container. [64]")
@click.option("--disk", type=int, help="MB for each of the writable /bg and /tmp. [64]")
@click.option("--cpus", type=float, help="Hard CPU cap per container, in CPUs. [1.0]")
@click.option("--max-body", type=int, help="Largest request body, KB. [1024]")
@click.option("--shutdown-grace", type=float, help="Seconds runs may go on after SIGTERM. [10]")
@click.option("--engine-timeout", type=float, help="Seconds a quick Engine API call may take. [2]")
@click.option(
    "--client-timeout", type=float, help="Seconds a client may take to send a request. [15]"
)
@click.option("--docker-host", help="Engine address (unix://...). [DOCKER_HOST or local socket]")
@click.option("--check-image", help="Image that proves --gvisor works at start-up.")
@click.option("--helper", help="The bgc-run helper binary. [built from source, cached]")
@click.option("--cache-dir", help="Where the built helper is kept. [~/.cache/bg-compiler]")
@click.option("--artifacts", type=int, help="MB a compile stage may hand to its runs. [64]")
@click.option(
    "--pool", type=int, help="Containers kept started ahead of demand; 0: off. [2 x workers]"
)
@click.option(
    "--pool-idle", type=float, help="Seconds a kind of warm container may go unused. [60]"
)
@click.option("--languages", help="The language registry, a TOML file. [shipped one]")
@click.option("--pin-cpus/--no-pin-cpus", default=None, help="Pin runs to spare CPUs. [on]")
@click.option("--state-dir", help="Directory of live instances' lock files. [/run/bg-compiler]")
@click.option("--data-dir", help="Where the embedded job store lives. [~/.local/share/bg-compiler]")
@click.option("--database-url", help="A PostgreSQL job store: postgresql://user@host:port/db.")
@click.option("--retention-days", type=float, help="Days finished jobs are kept. [7]")
@click.option(
    "--keepalive", type=float, help="Seconds between keep-alive comments on an idle stream. [15]"
)
@click.option("--webhook-secret", help="HMAC key signing job callbacks. [none: no callbacks]")
@click.option("--webhook-retries", type=int, help="Retries of a failed callback. [5]")
@click.option(
    "--webhook-allow-private/--no-webhook-allow-private",
    default=None,
    help="Allow callbacks to loopback and private addresses. [off]",
)
@click.option(
    "--cors-origin",
    multiple=True,
    help="An origin (https://host[:port]) whose pages may call the API; repeatable. [none]",
)
@click.option(
    "--require-api-key/--no-require-api-key",
    default=None,
    help="Every route but liveness, readiness and the docs needs a key (`keys create`). [off]",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    help="Log lines as key=value text or as JSON. [console; json if BGC_LOG_JSON=1]",
)
@click.option(
    "--queue-url",
    help="Distributed mode: the job queue, redis://host:port/db (this node: an API node).",
)
@click.option(
    "--visibility-timeout",
    type=float,
    help="Distributed mode: seconds a silent worker keeps its jobs. [30]",
)
@click.option(
    "--max-attempts", type=int, help="Distributed mode: attempts of a job whose workers vanish. [3]"
)
def start(**options: Any) -> None:
    """Start the HTTP service (with --queue-url: an API node of distributed mode)."""
    settings = _settings_from(options)
    configure_logging(verbose=settings.verbose, json=settings.json_logs)
    from bgcompiler.app import create_app, request_stop  # late: nothing runs at import time
    from bgcompiler.server import StoppingServer, raise_open_file_limit, server_config

    raise_open_file_limit()
    app = create_app(settings)
    server = StoppingServer(server_config(app, settings), on_stop=lambda: request_stop(app))
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully; with
    # these handlers in place that re-raise is a no-op and a clean stop exits 0.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    server.run()
    if not server.started:
        sys.exit(EXIT_STARTUP_FAILED)


# The flags of `start` that concern serving HTTP, which a worker does not do.
_HTTP_ONLY = {
    "port",
    "host",
    "max_body",
    "client_timeout",
    "cors_origin",
    "require_api_key",
    "retention_days",
    "keepalive",
    "backlog",
    "max_attempts",
    "max_count",
}


@main.command()
@click.option("--worker-id", help="This worker's name. [host-pid-random]")
def worker(**options: Any) -> None:
    """Start a worker node of distributed mode: it runs jobs from --queue-url on its own
    engine (--docker-host) and writes them to the shared --database-url."""
    settings = _settings_from(options)
    if settings.queue_url is None:
        raise click.UsageError("--queue-url is required")
    configure_logging(verbose=settings.verbose, json=settings.json_logs)
    import asyncio

    from bgcompiler.cluster.worker_node import WorkerNode
    from bgcompiler.errors import StartupError

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop_signal, stop.set)
        await WorkerNode(settings).serve(stop)

    try:
        asyncio.run(serve())
    except StartupError as exc:
        click.echo(f"cannot start: {exc.message}", err=True)
        sys.exit(EXIT_STARTUP_FAILED)


worker.params.extend(param for param in start.params if param.name not in _HTTP_ONLY)


@main.group()
def images() -> None:
    """Build and list the local language images (no registry is ever used)."""


@images.command("build")
@click.argument("names", nargs=-1)
@click.option("--missing", is_flag=True, help="Only build images that are not present.")
@click.option("--recipes", type=click.Path(file_okay=False), help="Recipe directory. [images/]")
def images_build(names: tuple[str, ...], missing: bool, recipes: str | None) -> None:
    """Build NAMES (all recipes when none are given)."""
    from bgcompiler import images as image_recipes

    book = image_recipes.RecipeBook.load(recipes)
    try:
        for tag in book.build(list(names) or book.names(), only_missing=missing):
            click.echo(tag)
    except image_recipes.BuildError as exc:
        raise click.ClickException(str(exc)) from exc


@images.command("list")
@click.option("--recipes", type=click.Path(file_okay=False), help="Recipe directory. [images/]")
def images_list(recipes: str | None) -> None:
    """List recipes, their tags and whether each image is present."""
    from bgcompiler import images as image_recipes

    book = image_recipes.RecipeBook.load(recipes)
    for name in book.names():
        recipe = book.recipes[name]
        present = "present" if image_recipes.image_present(recipe.tag) else "missing"
        click.echo(f"{name:12} {recipe.tag:28} {present}")


def _store_options(command: Any) -> Any:
    """The store options of `start`, for the commands that work on the store."""
    command = click.option(
        "--database-url", help="A PostgreSQL job store: postgresql://user@host:port/db."
    )(command)
    return click.option(
        "--data-dir", help="Where the embedded job store lives. [~/.local/share/bg-compiler]"
    )(command)


def _key_store(data_dir: str | None, database_url: str | None) -> Any:
    import asyncio

    from bgcompiler.errors import StartupError
    from bgcompiler.store.database import database_url as url_of
    from bgcompiler.store.database import open_database
    from bgcompiler.store.keys import KeyStore

    settings = _settings_from({"data_dir": data_dir, "database_url": database_url})
    try:
        url = url_of(settings.database_url, settings.data_dir)
        return KeyStore(asyncio.run(open_database(url, settings.data_dir)))
    except StartupError as exc:
        raise click.ClickException(exc.message) from exc


@main.group()
def keys() -> None:
    """Create, list and revoke API keys (used with `start --require-api-key`)."""


@keys.command("create")
@click.option("--name", required=True, help="The key's name: in logs, and owner of its jobs.")
@click.option(
    "--rate", default="20/s", show_default=True, help="Runs added to its bucket: N/s, N/m or N/h."
)
@click.option(
    "--burst",
    type=click.IntRange(min=1),
    default=40,
    show_default=True,
    help="Runs its bucket holds.",
)
@click.option("--runs-per-day", type=click.IntRange(min=1), help="Runs a UTC day. [no limit]")
@click.option(
    "--max-count", type=click.IntRange(min=1), help="Runs one request may need. [the server's]"
)
@click.option(
    "--max-memory", type=click.IntRange(min=6), help="MB per run, at most. [the server's]"
)
@click.option(
    "--max-time-ms", type=click.IntRange(min=1), help="Time per run, at most. [the server's]"
)
@click.option("--admin", is_flag=True, help="Sees every key's jobs, and /metrics.")
@_store_options
def keys_create(
    name: str,
    rate: str,
    burst: int,
    runs_per_day: int | None,
    max_count: int | None,
    max_memory: int | None,
    max_time_ms: int | None,
    admin: bool,
    data_dir: str | None,
    database_url: str | None,
) -> None:
    """Create a key; its secret is printed once (the store keeps only a hash of it)."""
    from bgcompiler.errors import BgcError
    from bgcompiler.keys import ApiKey, check_name, new_secret, parse_rate

    try:
        key = ApiKey(
            name=check_name(name),
            rate=parse_rate(rate),
            burst=burst,
            admin=admin,
            runs_per_day=runs_per_day,
            max_count=max_count,
            max_memory_mb=max_memory,
            max_time_ms=max_time_ms,
        )
        secret = new_secret()
        _key_store(data_dir, database_url).create(key, secret)
    except BgcError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(secret)
    click.echo(f"key {name!r} created; its secret is shown only this once", err=True)


@keys.command("list")
@_store_options
def keys_list(data_dir: str | None, database_url: str | None) -> None:
    """Every key (never its secret): prefix, rights, limits, runs today, state."""
    from bgcompiler.errors import BgcError

    try:
        listed = _key_store(data_dir, database_url).list()
    except BgcError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(
        f"{'NAME':20} {'PREFIX':13} {'ADMIN':5} {'RATE/S':>8} {'BURST':>6} {'PER DAY':>8} "
        f"{'TODAY':>7} {'MAX COUNT':>9} {'MAX MB':>6} {'MAX MS':>7} STATE"
    )

    def shown(value: int | None) -> str:
        return "-" if value is None else str(value)

    for key, today in listed:
        click.echo(
            f"{key.name:20} {key.prefix + '…':13} {'yes' if key.admin else 'no':5} "
            f"{key.rate:>8g} {key.burst:>6} {shown(key.runs_per_day):>8} {today:>7} "
            f"{shown(key.max_count):>9} {shown(key.max_memory_mb):>6} "
            f"{shown(key.max_time_ms):>7} {'revoked' if key.revoked_at else 'active'}"
        )


@keys.command("revoke")
@click.argument("name")
@_store_options
def keys_revoke(name: str, data_dir: str | None, database_url: str | None) -> None:
    """Revoke the key NAME: from the next request on, it answers 401."""
    from bgcompiler.errors import BgcError

    try:
        revoked = _key_store(data_dir, database_url).revoke(name)
    except BgcError as exc:
        raise click.ClickException(exc.message) from exc
    if not revoked:
        raise click.ClickException(f"no active key named {name!r}")
    click.echo(f"key {name!r} revoked")


# The client commands' shared arguments and options (`run`, `compare`).
_Command = TypeVar("_Command", bound=Callable[..., Any])
_FILES = click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
_STDIN = click.option(
    "--stdin", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Standard input."
)
_TESTS = click.option(
    "--tests",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A directory of NAME.in / NAME.out pairs: each run is judged.",
)
_WARMUP = click.option(
    "--warmup", type=click.IntRange(min=0), default=0, show_default=True, help="Runs not reported."
)


def _server_and_key(command: _Command) -> _Command:
    """--server and --api-key (BGC_SERVER, BGC_API_KEY)."""
    with_key = click.option(
        "--api-key", envvar="BGC_API_KEY", help="An API key (env BGC_API_KEY)."
    )(command)
    return click.option(
        "--server",
        envvar="BGC_SERVER",
        default="http://127.0.0.1:8080",
        show_default=True,
        help="The server's URL (env BGC_SERVER).",
    )(with_key)


@main.command("run")
@_FILES
@click.option(
    "--language", help="A name from the server's languages. [guessed from FILE's extension]"
)
@_STDIN
@_TESTS
@click.option(
    "--count", type=click.IntRange(min=1), default=1, show_default=True, help="Runs of each test."
)
@_WARMUP
@_server_and_key
@click.option("--json", "as_json", is_flag=True, help="Print the job document as JSON only.")
def run_command(
    files: tuple[Path, ...],
    language: str | None,
    stdin: Path | None,
    tests: Path | None,
    count: int,
    warmup: int,
    server: str,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Run FILES on a server (the first is the entry point), with a progress bar, then a
    table of runs and the summary. Exit 0: all ok and accepted; 1: a run failed or a wrong
    answer; 4: no answer from the server, or it refused the request."""
    from bgcompiler.client.cli_run import RunOptions, run_files

    options = RunOptions(
        files=list(files), language=language, stdin=stdin, tests=tests, count=count,
        warmup=warmup, server=server, api_key=api_key, as_json=as_json,
    )  # fmt: skip
    sys.exit(run_files(options))


@main.command("compare")
@_FILES
@click.option(
    "--language",
    "languages",
    multiple=True,
    help="Once for every file, or once per file in order. [guessed from each extension]",
)
@_STDIN
@_TESTS
@click.option(
    "--count", type=click.IntRange(min=1), default=5, show_default=True, help="Runs of each test."
)
@_WARMUP
@_server_and_key
@click.option("--json", "as_json", is_flag=True, help="Print the entries and jobs as JSON only.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the distributions as an image (png, svg, pdf; needs matplotlib).",
)
def compare_command(
    files: tuple[Path, ...],
    languages: tuple[str, ...],
    stdin: Path | None,
    tests: Path | None,
    count: int,
    warmup: int,
    server: str,
    api_key: str | None,
    as_json: bool,
    plot: Path | None,
) -> None:
    """Run each of FILES (one program each) on the same input, one after another, and show
    them side by side: times, source size in bytes, verdicts, and their wall-time
    distributions as a chart. Exit 0: every run ok and accepted; 1: a run failed or a wrong
    answer; 4: no answer from the server, or it refused a request."""
    from bgcompiler.client.cli_compare import CompareOptions, compare_files

    options = CompareOptions(
        files=list(files), languages=list(languages), stdin=stdin, tests=tests, count=count,
        warmup=warmup, server=server, api_key=api_key, as_json=as_json, plot=plot,
    )  # fmt: skip
    sys.exit(compare_files(options))
