"""The subcommands: each turns its options into one call on the engine and prints the result."""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

from obsbox.cli._errors import GuardedGroup
from obsbox.cli._output import print_drill, print_silences, print_status, print_up, say
from obsbox.stack import binaries, engine, targets
from obsbox.stack.components import BROWSABLE
from obsbox.stack.errors import DownloadError, NotRunningError, StackError, UsageError
from obsbox.stack.model import ProcessSpec

_RUNTIMES = click.Choice(["auto", "docker", "native"])
T = TypeVar("T")

if TYPE_CHECKING:
    from obsbox.stack.alertmanager_api import Matcher, Silence
    from obsbox.stack.model import StatusReport


@click.group(cls=GuardedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="obsbox", prog_name="obsbox")
def cli() -> None:
    """obsbox: an observability stack in a box (Collector, Prometheus, Alertmanager, Jaeger, Loki,
    Pyroscope, Grafana)."""


@cli.command()
@click.option("--runtime", type=_RUNTIMES, default="auto", show_default=True,
              help="docker (compose), native (local processes) or auto (docker when an engine answers).")
@click.option("--samples", is_flag=True, help="Also start the sample shop (gateway, orders, payments, inventory).")
@click.option("--download", is_flag=True,
              help="Native runtime: download missing binaries (pinned releases, sha256-verified) into the cache.")
def up(runtime: engine.RuntimeChoice, samples: bool, download: bool) -> None:
    """Start the stack (and the sample shop).

    Waits until every component is healthy, then prints each one's time to ready, the URLs and (the first time)
    the Grafana login. Running it twice changes nothing.
    """
    report = engine.up(runtime=runtime, samples=_shop() if samples else (), download=download, progress=say)
    print_up(report)
    if report.failed_downloads:
        # The rest runs (above), but what was asked for did not all arrive: the documented exit code says so.
        raise DownloadError("could not download " + ", ".join(report.failed_downloads) + " (nothing of them was "
                            "installed; the rest runs)", "see the reasons above; retry `obsbox up --download` later, "
                            "or install the binaries yourself")


def _shop() -> tuple[ProcessSpec, ...]:
    """The sample shop's services, handed to the engine to run (the engine knows none of them by name)."""
    from obsbox.samples._deps import note
    from obsbox.samples._services import shop_processes

    skipped = note()
    if skipped:
        click.echo(skipped, err=True)
    return shop_processes()


def _shop_names() -> list[str]:
    from obsbox.samples._services import SERVICES

    return list(SERVICES)


@cli.command()
@click.argument("components", nargs=-1, type=click.Choice(binaries.BUILDABLE))
def build(components: tuple[str, ...]) -> None:
    """Build the Collector, Prometheus 3, Alertmanager and Jaeger v2 from their Go modules (needs Go).

    Builds the versions the box pins into the cache `obsbox up --runtime native` runs from
    ($OBSBOX_CACHE_DIR, default ~/.cache/obsbox/bin); what is already built is kept. With no argument it also builds
    Helm and the Compose CLI (for the Kubernetes chart and `obsbox check`). About 12 minutes for the four
    components, 20-30 with Helm and Compose, on two cores the first time. Loki and Grafana are not built (run them
    with Docker, or put their binaries on PATH).
    """
    binaries.build(components)


@cli.command()
@click.option("--purge", is_flag=True, help="Also delete the data (metrics, alert state, logs).")
def down(purge: bool) -> None:
    """Stop everything `obsbox up` started. Data is kept unless --purge."""
    if engine.down(purge=purge, progress=say):
        click.echo("obsbox is stopped" + (" and its data removed" if purge else " (data kept; --purge removes it)"))
    else:
        click.echo("obsbox was not running" + (" (data removed)" if purge else ""))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (schema in docs/cli.md).")
def status(as_json: bool) -> None:
    """Show components, firing alerts and active silences.

    One line per component (state, URL, version, pid); `--json` gives the documented schema (docs/cli.md).
    """
    report = engine.status()
    silences, silences_error = _active_silences(report)
    if as_json:
        click.echo(json.dumps({**report.to_json(), "silences": [s.to_json() for s in silences],
                               "silences_error": silences_error}, indent=2))
    else:
        print_status(report)
        if report.runtime is not None:
            print_silences(silences, error=silences_error)


def _active_silences(report: StatusReport) -> tuple[list[Silence], str | None]:
    """Alertmanager's active and pending silences when it runs (empty, with the error, when it cannot be asked)."""
    from obsbox.stack.alertmanager_api import AlertmanagerAPI, AlertmanagerAPIError

    alertmanager = report.component("alertmanager")
    if alertmanager is None or alertmanager.url is None or alertmanager.state not in ("healthy", "running"):
        return [], None
    try:
        return AlertmanagerAPI(alertmanager.url, timeout=5.0).silences(), None
    except AlertmanagerAPIError as e:
        return [], str(e)


@cli.command()
@click.argument("component", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing what is written.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines to show first.")
def logs(component: str | None, follow: bool, lines: int) -> None:
    """Show the logs of one component (or all)."""
    from obsbox.stack.logs import known_components

    names = known_components(_shop_names())
    if component is not None and component not in names:
        raise UsageError(f"unknown component {component!r}", "the components are: " + ", ".join(names))
    runtime = engine.current()
    if runtime is None:
        raise NotRunningError("obsbox is not running, so there are no logs", "start it with `obsbox up`")
    code = runtime.logs(component, lines=lines, follow=follow, write=click.echo)
    if code:
        sys.exit(code)


@cli.command(name="open")
@click.argument("component", type=click.Choice(BROWSABLE), default="grafana")
def open_(component: str) -> None:
    """Open a component's UI in the browser (and print its URL)."""
    url = engine.url_of(component)
    click.echo(url)
    webbrowser.open(url)


@cli.command()
@click.argument("service")
@click.option("--error-rate", type=float, help="Fraction of requests answered with 503 (0-1).")
@click.option("--latency-ms", type=float, help="Extra latency added to each request, in milliseconds.")
@click.option("--jitter-ms", type=float, help="Random extra latency on top, in milliseconds.")
@click.option("--outage", is_flag=True, default=None, help="Answer every request with 503.")
@click.option("--slow-query-ms", type=float,
              help="inventory only: each reservation also runs a database query this slow, in milliseconds.")
@click.option("--reset", is_flag=True, help="Remove every fault.")
def chaos(service: str, error_rate: float | None, latency_ms: float | None, jitter_ms: float | None,
          outage: bool | None, slow_query_ms: float | None, reset: bool) -> None:
    """Inject faults into a sample service.

    e.g. `obsbox chaos payments --error-rate 0.5`; options layer; `--reset` ends them all.
    """
    from obsbox.samples import faults

    now = faults.chaos(service, base=engine.urls().get(service), error_rate=error_rate, latency_ms=latency_ms,
                       jitter_ms=jitter_ms, outage=outage, slow_query_ms=slow_query_ms, reset=reset)
    active = {k: v for k, v in now.items() if v}
    click.echo(f"{service}: " + (", ".join(f"{k}={v}" for k, v in active.items()) if active else "no faults"))


@cli.command()
@click.option("--once", is_flag=True, help="Print one screen and exit (no colours, no clearing).")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between refreshes.")
@click.option("--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C).")
def top(once: bool, interval: float, duration: float | None) -> None:
    """Live terminal view of the services.

    Per service request rate, error %, p99 and a sparkline; circuit breakers; worker pools; firing alerts —
    read from the Prometheus and Alertmanager HTTP APIs.
    """
    _top(once=once, interval=interval, duration=duration)


def _top(*, once: bool, interval: float, duration: float | None) -> None:
    from obsbox.stack.top import render, snapshot

    prometheus = engine.url_of("prometheus")
    alertmanager = engine.urls().get("alertmanager")
    colour = not once and sys.stdout.isatty()
    deadline = None if duration is None else time.monotonic() + duration
    while True:
        screen = render(snapshot(prometheus, alertmanager), colour=colour, title=prometheus)
        if once:
            click.echo(screen)
            return
        # Clear and home the cursor: plain ANSI, no curses or extra dependency.
        click.echo("\033[2J\033[H" + screen + "\n\n(Ctrl-C to quit)" if colour else screen + "\n")
        if deadline is not None and time.monotonic() >= deadline:
            return
        time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))


@cli.command()
@click.option("--runtime", type=_RUNTIMES, default="auto", show_default=True)
@click.option("--rps", default=5.0, show_default=True, help="Requests per second of the load generator.")
@click.option("--duration", default=600.0, show_default=True,
              help="Seconds of load and of the live view (Ctrl-C ends it earlier; the stack keeps running).")
@click.option("--no-top", is_flag=True, help="Do not show the live view (just run the load).")
def demo(runtime: engine.RuntimeChoice, rps: float, duration: float, no_top: bool) -> None:
    """The stack, the sample shop, load and `obsbox top`.

    Starts everything, says what to open and what to try, then shows the live view until --duration or Ctrl-C
    (the stack keeps running; `obsbox down` stops it).
    """
    from obsbox.samples._services import LOAD_MODULES, require

    require(LOAD_MODULES, "the demo's load generator")
    from obsbox.samples import load

    report = engine.up(runtime=runtime, samples=_shop(), progress=say)
    print_up(report)
    gateway = engine.url_of("gateway")
    worker = threading.Thread(
        target=lambda: load.run(gateway, rps=rps, duration=duration, progress=None), daemon=True, name="load")
    worker.start()
    urls = engine.urls()
    click.echo(f"\nload: {rps:g} requests/s to {gateway} for {duration:.0f}s\n\nwhat to try next:")
    for name in ("grafana", "prometheus", "alertmanager", "jaeger"):
        if name in urls:
            click.echo(f"  open {urls[name]:<28} (`obsbox open {name}`)")
    click.echo("  obsbox chaos payments --error-rate 0.5   # an error-rate alert fires within ~2 minutes")
    click.echo("  obsbox chaos payments --reset            # and resolves")
    click.echo("  obsbox status                            # components and firing alerts")
    click.echo("  obsbox down                              # stop (data kept; --purge removes it)\n")
    try:
        if no_top:
            worker.join(duration + 10)
        else:
            time.sleep(3)
            _top(once=False, interval=2.0, duration=duration)
    except KeyboardInterrupt:
        click.echo("\nthe stack keeps running; `obsbox down` stops it")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--service-name", help="service.name of the program (default: OBSBOX_SERVICE_NAME, OTEL_SERVICE_NAME, "
              "else derived from the command: Django project, Flask app, app module, working directory).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(service_name: str | None, command: tuple[str, ...]) -> None:
    """Run a Python program instrumented, unchanged.

    e.g. `obsbox run -- uvicorn app:app`: configure() from the environment, FastAPI/Starlette/Flask/Django apps
    instrumented as they are created.
    """
    from obsbox.instrumentation.auto import command_environment, service_name_for

    if not command:
        raise UsageError("give the command to run", "e.g. `obsbox run -- uvicorn app:app`")
    if service_name:
        source = "--service-name"
    else:
        service_name, source = service_name_for(command)
    click.echo(f"obsbox run: service.name is {service_name!r} ({source}); to change it: "
               "obsbox run --service-name NAME -- ..., or OBSBOX_SERVICE_NAME=NAME", err=True)
    env = command_environment(os.environ, service_name=service_name)
    try:
        os.execvpe(command[0], list(command), env)
    except OSError as e:
        raise UsageError(f"cannot run {command[0]!r}: {e.strerror}", "is it installed and on PATH?") from None


@cli.command()
@click.option("--tree", type=click.Path(exists=True, file_okay=False), help="The stack tree (default: the shipped one).")
def check(tree: str | None) -> None:
    """Validate a (modified) stack tree.

    The compose file (loaded by Docker Compose when it is installed), Prometheus config and rules (promtool), rule
    unit tests, Alertmanager config (amtool), dashboards.
    """
    from pathlib import Path

    from obsbox.stack.check import check_tree

    results = check_tree(Path(tree) if tree else None)
    failed = 0
    for result in results:
        mark = {"ok": click.style("ok  ", fg="green"), "fail": click.style("FAIL", fg="red"),
                "skip": click.style("skip", fg="yellow")}[result.outcome]
        click.echo(f"{mark} {result.name}" + (f": {result.detail}" if result.detail else ""))
        failed += result.outcome == "fail"
    if failed:
        raise StackError(f"{failed} check(s) failed", "fix the files named above and run `obsbox check` again")


@cli.group()
def silence() -> None:
    """Silence alerts in Alertmanager: add, list, expire.

    Matchers use Alertmanager's syntax: `alertname=HTTPServerHighErrorRate`, `service_name=~"orders|payments"`,
    `severity!=info`; several matchers must all match.
    """


@silence.command(name="add")
@click.argument("matchers", nargs=-1, required=True)
@click.option("--for", "duration", default="2h", show_default=True, help="How long: 30m, 2h, 1h30m, 1d ...")
@click.option("--comment", required=True, help="Why (shown to everyone who sees the silence).")
@click.option("--author", help="Who silences (default: $USER).")
def silence_add(matchers: tuple[str, ...], duration: str, comment: str, author: str | None) -> None:
    """Silence the alerts that match every MATCHER, from now for --for; prints the silence id."""
    from obsbox.stack import alertmanager_api as am

    parsed, seconds = _silence_input(matchers, duration, comment)
    api = am.AlertmanagerAPI(engine.url_of("alertmanager"))
    created_by = author or os.environ.get("USER") or "obsbox"
    silence_id = _alertmanager_call(lambda: api.add_silence(parsed, seconds=seconds, comment=comment.strip(),
                                                            created_by=created_by))
    click.echo(silence_id)
    say(f"silenced {' '.join(str(m) for m in parsed)} for {duration} (`obsbox silence expire {silence_id}` ends it)")


@silence.command(name="list")
@click.option("--all", "everything", is_flag=True, help="Expired silences too.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def silence_list(everything: bool, as_json: bool) -> None:
    """List the active and pending silences (--all: expired ones too)."""
    from obsbox.stack import alertmanager_api as am

    api = am.AlertmanagerAPI(engine.url_of("alertmanager"))
    found = _alertmanager_call(lambda: api.silences(states=() if everything else ("active", "pending")))
    if as_json:
        click.echo(json.dumps([s.to_json() for s in found], indent=2))
    else:
        print_silences(found, empty="no silences" if everything else "no active silences")


@silence.command(name="expire")
@click.argument("silence_ids", nargs=-1, required=True)
def silence_expire(silence_ids: tuple[str, ...]) -> None:
    """End silences now (their alerts notify again)."""
    from obsbox.stack import alertmanager_api as am

    api = am.AlertmanagerAPI(engine.url_of("alertmanager"))
    for silence_id in silence_ids:
        _alertmanager_call(functools.partial(api.expire_silence, silence_id))
        click.echo(f"expired {silence_id}")


def _silence_input(matchers: tuple[str, ...], duration: str, comment: str) -> tuple[list[Matcher], float]:
    from obsbox.stack import alertmanager_api as am

    try:
        parsed = am.parse_matchers(matchers)
    except am.MatcherError as e:
        raise UsageError(str(e), "matchers use Alertmanager's syntax; see `obsbox silence add --help`") from None
    try:
        seconds = am.parse_duration(duration)
    except ValueError as e:
        raise UsageError(f"--for: {e}", "e.g. --for 2h") from None
    if not comment.strip():
        raise UsageError("--comment is empty", "say why the alerts are silenced, e.g. --comment 'deploy of orders'")
    return parsed, seconds


def _alertmanager_call(call: Callable[[], T]) -> T:
    from obsbox.stack import alertmanager_api as am

    try:
        return call()
    except am.AlertmanagerAPIError as e:
        raise StackError(str(e), "is Alertmanager up? `obsbox status` shows it") from None


@cli.command()
@click.option("--severity", type=click.Choice(["warning", "critical"]), default="critical", show_default=True,
              help="The grade to drill: its receivers are the ones that must hear it.")
@click.option("--timeout", default=180.0, show_default=True,
              help="Seconds to wait for the alert to travel and every receiver to answer.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def drill(severity: str, timeout: float, as_json: bool) -> None:
    """Send a synthetic, clearly labelled alert through the running box and report who heard it.

    The alert (AlertDrill, drill="true") goes through Prometheus' rule evaluation and Alertmanager's routing to
    the real receivers of its severity; each receiver's integrations are reported delivered or failed (with the
    error), the alert is resolved, and the exit code is non-zero if any failed.
    """
    from obsbox.alerting.drill import run

    report = run(severity=severity, timeout=timeout, progress=None if as_json else say)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        print_drill(report)
    if not report.ok:
        failed = sorted({r.receiver for r in report.results if r.outcome == "failed"})
        raise StackError(
            report.error or f"the drill did not reach {', '.join(failed)}",
            "fix the receiver's OBSBOX_ALERT_* settings (docs/stack.md), `obsbox down && obsbox up`, drill again",
        )


@cli.group()
def scrape() -> None:
    """Your own services' /metrics endpoints, scraped by the native box's Prometheus: add, remove, list.

    Services that push OTLP to the collector (127.0.0.1:4318, obsbox's default) need none of this; without a
    collector, start the service with OBSBOX_METRICS_PORT=9464 and `obsbox scrape add 127.0.0.1:9464`.
    """


@scrape.command(name="add")
@click.argument("address")
@click.option("--service-name", help="service_name label for endpoints that do not set one (obsbox's do).")
def scrape_add(address: str, service_name: str | None) -> None:
    """Scrape ADDRESS (host:port of a /metrics endpoint) from now on; kept across `up` and `down`."""
    kept, published = engine.add_target(address, service_name)
    where = f"listed in {published}; Prometheus picks it up within seconds" if published else \
        "Prometheus scrapes it once the box runs (`obsbox up`)"
    click.echo(f"scraping {kept[-1].address} ({where})")


@scrape.command(name="remove")
@click.argument("address")
def scrape_remove(address: str) -> None:
    """Stop scraping ADDRESS."""
    engine.remove_target(address)
    click.echo(f"no longer scraping {targets.parse_address(address)}")


@scrape.command(name="list")
def scrape_list() -> None:
    """The targets added with `obsbox scrape add`, with Prometheus' view of each when the box runs."""
    kept = engine.list_targets()
    if not kept:
        click.echo("no scrape targets of your own (`obsbox scrape add 127.0.0.1:9464` adds one)")
        return
    health = _target_health(engine.urls().get("prometheus"))
    for t in kept:
        state = health.get(t.address, "not scraped yet" if health else "-")
        click.echo(f"  {t.address:<24} {t.service_name or '-':<16} {state}")


def _target_health(prometheus: str | None) -> dict[str, str]:
    """address → "up" / "down: <error>" from Prometheus' /api/v1/targets ({} when it cannot be asked)."""
    from obsbox.stack.health import get_json

    if not prometheus:
        return {}
    try:
        body = get_json(f"{prometheus}/api/v1/targets", {"state": "active"})
    except (OSError, ValueError):
        return {}
    out: dict[str, str] = {}
    for t in body.get("data", {}).get("activeTargets", []):
        address = str(t.get("labels", {}).get("instance", ""))
        error = t.get("lastError")
        out[address] = str(t.get("health")) + (f": {error}" if error else "")
    return out
