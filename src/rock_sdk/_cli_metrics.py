"""`rock metrics`: the agents' Prometheus metrics, as their exposition text or parsed samples.

Rules:
- It reads every host of the cluster the commands reach (``--hosts``, ``$ROCK_HOSTS``, the
  config file, else this host's agent); ``--host ID`` (a host id, as the HOST column shows
  it; repeatable) reads only those. Each host's text follows a ``# host: ID`` comment line,
  so the whole output is still one valid exposition per host for a scraper.
- ``--json`` prints one `SampleRow` per line (host, metric name, labels, value), parsed with
  prometheus_client's own parser: nothing here reads the format by hand.
- A host that cannot be read fails the command (exit 125), naming it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import typer
from prometheus_client.parser import text_string_to_metric_families

from rock_core import read_metrics

from ._cli_base import open_admin, run_async
from ._cli_format import Column, show_rows
from ._cli_host import Host


class SampleRow(msgspec.Struct, kw_only=True):
    """One sample of one host's metrics, as `rock metrics --json` shows it."""

    host: str
    name: str
    labels: dict[str, str]
    value: float


SAMPLE_COLUMNS: list[Column[SampleRow]] = [
    Column("HOST", lambda r: r.host),
    Column("NAME", lambda r: r.name),
    Column("LABELS", lambda r: ",".join(f"{k}={v}" for k, v in sorted(r.labels.items()))),
    Column("VALUE", lambda r: f"{r.value:g}"),
]


def sample_rows(texts: dict[str, str]) -> list[SampleRow]:
    """Every sample of every host's exposition."""
    return [
        SampleRow(host=host, name=sample.name, labels=dict(sample.labels), value=sample.value)
        for host, text in texts.items()
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def metrics(
    ctx: typer.Context,
    host: Host = None,
    json: Annotated[bool, typer.Option("--json", help="one JSON object per sample")] = False,
) -> None:
    """The agents' metrics (Prometheus text; see docs/metrics.md)."""

    async def body() -> None:
        async with open_admin() as cluster:
            texts = await read_metrics(cluster, host)
        if json:
            show_rows(sample_rows(texts), SAMPLE_COLUMNS, json=True)
            return
        for host_id, text in texts.items():
            print(f"# host: {host_id}")
            print(text, end="")

    run_async(ctx, body)


def add_commands(app: typer.Typer) -> None:
    """Add `metrics` to the `rock` app."""
    app.command("metrics")(metrics)


__all__ = ["SAMPLE_COLUMNS", "SampleRow", "add_commands", "sample_rows"]
