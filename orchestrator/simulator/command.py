"""``orchestrator simulate``: run the simulator in the foreground.

A plain typer-compatible function; the CLI registers it. Every option has an
``ORCHESTRATOR_SIM_*`` environment variable twin.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable
from typing import Annotated

import typer

from .config import SimulatorConfig

_ENV = "ORCHESTRATOR_SIM_"


def _opt(name: str, help_text: str) -> typer.models.OptionInfo:
    return typer.Option(envvar=_ENV + name.upper(), help=help_text)  # type: ignore[no-any-return]


def serve(config: SimulatorConfig, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """``server.serve``, imported when called: the web server (starlette, uvicorn)
    would cost every command of the CLI, which registers ``simulate``, some 50 ms."""
    from .server import serve as serve_forever

    serve_forever(config, host, port, on_ready=on_ready)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_shares(pairs: list[str]) -> dict[str, float]:
    """``["api_error=0.02", ...]`` -> ``{"api_error": 0.02}``."""
    shares: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected ERROR_TYPE=SHARE, got {pair!r}")
        shares[name.strip()] = float(value)
    return shares


def simulate(  # one option per knob: long by design, no logic in the signature
    host: Annotated[
        str, _opt("host", "Interface to listen on (loopback unless --allow-remote).")
    ] = "127.0.0.1",
    port: Annotated[int, _opt("port", "TCP port (0 picks a free one).")] = 8765,
    processing_seconds: Annotated[
        float, _opt("processing_seconds", "Mean seconds from create to ended.")
    ] = 30.0,
    processing_jitter: Annotated[
        float, _opt("processing_jitter", "Processing time spread, as a fraction.")
    ] = 0.2,
    seed: Annotated[int, _opt("seed", "Seed for ids, outcomes, faults and shuffles.")] = 0,
    expiry_seconds: Annotated[
        float, _opt("expiry_seconds", "Seconds from create to expires_at.")
    ] = 86_400.0,
    retention_seconds: Annotated[
        float, _opt("retention_seconds", "Seconds from create to archived_at.")
    ] = 29 * 86_400.0,
    cancel_seconds: Annotated[float, _opt("cancel_seconds", "Seconds from cancel to ended.")] = 1.0,
    cancel_inflight_share: Annotated[
        float, _opt("cancel_inflight_share", "Share finishing despite cancel.")
    ] = 0.1,
    errored_share: Annotated[
        list[str] | None, _opt("errored_share", "ERROR_TYPE=SHARE, repeatable.")
    ] = None,
    expired_share: Annotated[float, _opt("expired_share", "Share of requests that expire.")] = 0.0,
    invalid_output_share: Annotated[
        float, _opt("invalid_output_share", "Share of structured answers made invalid.")
    ] = 0.0,
    rpm_limit: Annotated[
        int | None, _opt("rpm_limit", "Requests per minute on batch endpoints.")
    ] = None,
    queue_limit: Annotated[
        int | None, _opt("queue_limit", "Max requests processing at once.")
    ] = None,
    fault_408_share: Annotated[
        float, _opt("fault_408_share", "Share of calls answered 408.")
    ] = 0.0,
    fault_429_share: Annotated[
        float, _opt("fault_429_share", "Share of calls answered 429.")
    ] = 0.0,
    fault_500_share: Annotated[
        float, _opt("fault_500_share", "Share of calls answered 500.")
    ] = 0.0,
    fault_529_share: Annotated[
        float, _opt("fault_529_share", "Share of calls answered 529.")
    ] = 0.0,
    cut_results_share: Annotated[
        float, _opt("cut_results_share", "Share of results downloads cut.")
    ] = 0.0,
    create_500_share: Annotated[
        float, _opt("create_500_share", "Share of creates answered 500.")
    ] = 0.0,
    create_500_made_share: Annotated[
        float, _opt("create_500_made_share", "Of those, the share that made the batch.")
    ] = 0.5,
    lost_create_share: Annotated[
        float, _opt("lost_create_share", "Share of create responses lost.")
    ] = 0.0,
    list_lag_seconds: Annotated[
        float, _opt("list_lag_seconds", "Seconds before a new batch shows in list pages.")
    ] = 0.0,
    slow_response_seconds: Annotated[float, _opt("slow_response_seconds", "Added latency.")] = 0.0,
    api_key: Annotated[
        list[str] | None, _opt("api_key", "Accepted API key, repeatable (default: any).")
    ] = None,
    allow_remote: Annotated[
        bool, _opt("allow_remote", "Allow listening on a non-loopback host.")
    ] = False,
) -> None:
    """Run a local Message Batches API simulator (no key, no network, no spend)."""
    if not is_loopback(host) and not allow_remote:
        raise typer.BadParameter(
            f"{host} is not a loopback address; pass --allow-remote to expose the simulator",
            param_hint="--host",
        )
    config = SimulatorConfig(
        seed=seed,
        processing_seconds=processing_seconds,
        processing_jitter=processing_jitter,
        expiry_seconds=expiry_seconds,
        retention_seconds=retention_seconds,
        cancel_seconds=cancel_seconds,
        cancel_inflight_share=cancel_inflight_share,
        errored_share=parse_shares(errored_share or []),
        expired_share=expired_share,
        invalid_output_share=invalid_output_share,
        rpm_limit=rpm_limit,
        queue_limit=queue_limit,
        fault_408_share=fault_408_share,
        fault_429_share=fault_429_share,
        fault_500_share=fault_500_share,
        fault_529_share=fault_529_share,
        cut_results_share=cut_results_share,
        create_500_share=create_500_share,
        create_500_made_share=create_500_made_share,
        lost_create_share=lost_create_share,
        list_lag_seconds=list_lag_seconds,
        slow_response_seconds=slow_response_seconds,
        api_keys=frozenset(api_key) if api_key else None,
    )
    try:
        serve(config, host, port, on_ready=_announce)
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        typer.echo(f"error: --port {port} on {host}: {exc.strerror}; pick another port", err=True)
        raise typer.Exit(2) from None


def _announce(base_url: str) -> None:
    typer.echo(f"Message Batches simulator listening on {base_url}")
    typer.echo("Point the anthropic SDK at it:")
    typer.echo(f"  export ANTHROPIC_BASE_URL={base_url}")
    typer.echo("  export ANTHROPIC_API_KEY=sk-simulator   # any non-empty key")
    typer.echo(f'  or: anthropic.Anthropic(base_url="{base_url}", api_key="sk-simulator")')
    typer.echo("Ledger: GET /_simulator/ledger   Stop: Ctrl-C")
