"""How the CLI prints engine results: the `up` summary and the `status` table."""

from __future__ import annotations

import click

from obsbox.alerting.drill import DrillReport
from obsbox.stack.alertmanager_api import Silence
from obsbox.stack.model import StatusReport, UpReport

_COLOURS = {"healthy": "green", "running": "yellow", "starting": "yellow", "exited": "red", "stopped": "white",
            "unavailable": "white"}


def say(message: str) -> None:
    click.echo(message, err=True)


def print_up(report: UpReport) -> None:
    click.echo(f"\nobsbox is up ({report.runtime} runtime):")
    for item in report.started:
        ready = "already running" if item.seconds is None else f"ready in {item.seconds:.1f}s"
        click.echo(f"  {item.name:<13} {item.url or '-':<28} {ready}")
    for line in report.notes:
        click.echo(f"  {line}")
    if report.grafana_password:
        if report.password_is_new:
            click.echo(f"\nGrafana login: admin / {report.grafana_password}   (shown once; kept in the state dir, 0600)")
        else:
            click.echo("\nGrafana login: admin / (the password printed on the first `obsbox up`; "
                       "kept in the state dir)")
    if report.unavailable:
        why = f"; {report.note}" if report.note else ""
        click.echo(f"\nnot available here (the rest runs{why}):")
        for name, why in report.unavailable.items():
            click.echo(f"  {name:<13} {why}")


def print_status(report: StatusReport) -> None:
    if report.runtime is None:
        click.echo("obsbox is not running (start it with `obsbox up`)")
        return
    click.echo(f"runtime: {report.runtime}")
    click.echo(f"  {'COMPONENT':<13} {'STATE':<12} {'URL':<28} {'VERSION':<10} PID")
    for c in report.components:
        state = click.style(f"{c.state:<12}", fg=_COLOURS.get(c.state))
        extra = ""
        if c.state == "exited":
            extra = f"  exit code {c.exit_code}, after {c.restarts} restart(s); see `obsbox logs {c.name}`"
        elif c.restarts:
            extra = f"  restarted {c.restarts}x"
        elif c.reason:
            extra = f"  {c.reason}"
        click.echo(f"  {c.name:<13} {state} {c.url or '-':<28} {c.version or '-':<10} {c.pid or '-'}{extra}")
    # Watchdog fires by design (a dead man's switch): in the text view it says the alert path works.
    watchdog = [a for a in report.alerts if a.name == "Watchdog"]
    alerts = [a for a in report.alerts if a.name != "Watchdog"]
    if report.alerts_error:
        click.echo(f"alerts: unknown ({report.alerts_error})")
        return
    if watchdog:
        click.echo(f"alerting path: working (Watchdog reached {watchdog[0].source})")
    if alerts:
        click.echo("firing alerts:")
        for a in alerts:
            where = a.labels.get("service_name") or a.labels.get("job") or ""
            click.echo(f"  {click.style(a.name, fg='red')} {where} {a.labels.get('severity', '')}  "
                       f"since {a.since or '?'}  {a.summary or ''}".rstrip())
    else:
        click.echo("firing alerts: none")


def print_silences(silences: list[Silence], *, error: str | None = None, empty: str = "silences: none") -> None:
    if error:
        click.echo(f"silences: unknown ({error})")
        return
    if not silences:
        click.echo(empty)
        return
    click.echo("silences:")
    for s in silences:
        state = click.style(f"{s.state:<8}", fg="yellow" if s.state == "active" else None)
        click.echo(f"  {s.id}  {state} until {s.ends_at}  {' '.join(str(m) for m in s.matchers)}"
                   f"  by {s.created_by}: {s.comment}")


def print_drill(report: DrillReport) -> None:
    click.echo(f"\ndrill {report.drill_id} ({report.severity}):")
    if report.routed_after is not None:
        click.echo(f"  path: Prometheus fired AlertDrill after {report.fired_after or 0:.1f}s, Alertmanager had it "
                   f"after {report.routed_after:.1f}s and routed it to {', '.join(report.receivers) or 'nobody'}")
    for r in report.results:
        mark = click.style("delivered", fg="green") if r.outcome == "delivered" else click.style("FAILED   ", fg="red")
        click.echo(f"  {r.receiver:<12} {r.integration:<12} {mark}" + (f"  {r.error}" if r.error else ""))
    for name in report.silent:
        click.echo(f"  {name:<12} {'-':<12} no integration (this receiver notifies nobody)")
    if report.error:
        click.echo(f"  {click.style('FAILED', fg='red')}: {report.error}")
    if report.resolved_after is not None:
        click.echo(f"  resolved {report.resolved_after:.1f}s after the drill ended"
                   + (f"; resolved message delivered to {', '.join(report.resolved_notified)}"
                      if report.resolved_notified else ""))
    elif report.routed_after is not None:
        click.echo("  not resolved yet: it resolves once Prometheus evaluates the rule again")
