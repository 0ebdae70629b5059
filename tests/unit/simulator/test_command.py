"""``orchestrator simulate``: loopback guard, options and their env var twins."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from orchestrator.simulator import SimulatorConfig, command
from orchestrator.simulator.command import is_loopback, parse_shares, simulate


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_refuses_remote_host_without_flag() -> None:
    app = typer.Typer()
    app.command()(simulate)
    result = CliRunner().invoke(app, ["--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "--allow-remote" in result.output


def test_every_option_has_an_env_var_twin() -> None:
    app = typer.Typer()
    app.command()(simulate)
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "ORCHESTRATOR_SIM_PROCESSING_SECONDS" in result.output
    assert "ORCHESTRATOR_SIM_ALLOW_REMOTE" in result.output


def test_parse_shares() -> None:
    assert parse_shares(["api_error=0.02", "overloaded_error=0.01"]) == {
        "api_error": 0.02,
        "overloaded_error": 0.01,
    }
    with pytest.raises(typer.BadParameter):
        parse_shares(["api_error"])


def test_invalid_output_share_reaches_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SimulatorConfig] = []
    monkeypatch.setattr(command, "serve", lambda config, *_, **__: seen.append(config))
    app = typer.Typer()
    app.command()(simulate)
    result = CliRunner().invoke(app, ["--invalid-output-share", "0.25"])
    assert result.exit_code == 0, result.output
    assert seen[0].invalid_output_share == 0.25
    env = {"ORCHESTRATOR_SIM_INVALID_OUTPUT_SHARE": "0.5"}
    assert CliRunner().invoke(app, [], env=env).exit_code == 0
    assert seen[1].invalid_output_share == 0.5
    assert CliRunner().invoke(app, ["--invalid-output-share", "1.5"]).exit_code != 0
