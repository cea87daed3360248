"""Settings: the seed's defaults, flags over env over defaults, and validation."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from bgcompiler import cli
from bgcompiler.settings import Settings, default_workers


def test_defaults_are_the_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without flags or env, the seed's defaults apply, plus ours."""
    for key in list(os.environ):
        if key.startswith("BGC_"):
            monkeypatch.delenv(key)
    settings = Settings()
    assert (settings.backlog, settings.memory, settings.cpu, settings.output) == (
        2000,
        512,
        1024,
        30,
    )
    assert (settings.timeout, settings.port, settings.gvisor, settings.verbose) == (
        30,
        8080,
        False,
        False,
    )
    assert settings.workers == max((os.cpu_count() or 1) - 2, 2) == default_workers()
    assert (settings.host, settings.runtime, settings.max_count) == ("127.0.0.1", "runsc", 100)
    assert settings.runtime_name is None


def test_env_overrides_defaults_and_flags_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """BGC_<FLAG> beats the default; an explicit flag beats BGC_<FLAG>."""
    monkeypatch.setenv("BGC_BACKLOG", "7")
    monkeypatch.setenv("BGC_MEMORY", "256")
    monkeypatch.setenv("BGC_GVISOR", "true")
    settings = cli._settings_from({"backlog": 9, "memory": None, "gvisor": None})
    assert settings.backlog == 9
    assert settings.memory == 256
    assert settings.gvisor is True
    assert settings.runtime_name == "runsc"


def test_invalid_values_are_usage_errors() -> None:
    """A nonsensical flag stops the CLI with a message naming it."""
    result = CliRunner().invoke(cli.main, ["start", "--memory", "1"])
    assert result.exit_code == 2
    assert "--memory" in result.output


def test_start_lists_every_seed_flag() -> None:
    """`bg-compiler start --help` offers every flag of the seed and ours."""
    text = CliRunner().invoke(cli.main, ["start", "--help"]).output
    for flag in [
        "--backlog",
        "--memory",
        "--cpu",
        "--output",
        "--timeout",
        "--workers",
        "--port",
        "--gvisor",
        "-v, --verbose",
        "--host",
        "--runtime",
        "--max-count",
        "--pids",
        "--disk",
        "--cpus",
    ]:
        assert flag in text, flag
