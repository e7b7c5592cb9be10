"""The engine the CLI drives: pick a runtime, start/stop/inspect the box and the processes handed to it.

>>> from obsbox.stack import engine
>>> report = engine.up(runtime="auto", samples=shop_processes(), progress=print)    # doctest: +SKIP
>>> engine.status().to_json()["components"][0]["state"]                 # doctest: +SKIP
'healthy'

`auto` picks docker when an engine answers, else native (and says why). The runtime that ran `up` is recorded in
the state dir, so `status`, `down`, `chaos`, `top` talk to what is actually running.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from obsbox.stack import targets
from obsbox.stack.binaries import BUILDABLE
from obsbox.stack.components import COMPONENTS
from obsbox.stack.docker import DockerRuntime, engine_available
from obsbox.stack.errors import NotRunningError, RuntimeUnavailableError, UsageError
from obsbox.stack.model import ProcessSpec, Progress, Runtime, StatusReport, UpReport
from obsbox.stack.native import NativeRuntime
from obsbox.stack.state import active_runtime, forget_runtime, record_runtime, state_dir

RuntimeChoice = Literal["auto", "docker", "native"]


def choose(runtime: RuntimeChoice, *, download: bool = False, progress: Progress | None = None) -> Runtime:
    """The runtime to start: docker if asked or if an engine answers (auto), else native."""
    state = state_dir()
    if runtime == "native":
        return NativeRuntime(state, download=download)
    ok, why = engine_available()
    if runtime == "docker":
        if not ok:
            raise RuntimeUnavailableError(f"--runtime docker: {why}",
                                          "start Docker, or run the box natively with --runtime native")
        return DockerRuntime(state)
    if ok:
        return DockerRuntime(state)
    if progress:
        progress(f"{why}: using the native runtime (local processes)")
    return NativeRuntime(state, download=download, docker_reason=why)


def current() -> Runtime | None:
    """The runtime recorded by the last `up`, or None."""
    record = active_runtime()
    if not record:
        return None
    if record.get("runtime") == "docker":
        return DockerRuntime(state_dir())
    return NativeRuntime(state_dir())


def up(*, runtime: RuntimeChoice = "auto", samples: Sequence[ProcessSpec] = (), download: bool = False,
       progress: Progress) -> UpReport:
    """Start the box (idempotent: what already runs is left alone and reported)."""
    recorded = active_runtime()
    if recorded and runtime != "auto" and recorded.get("runtime") != runtime:
        existing = current()
        if existing is not None and existing.status().running:
            raise UsageError(f"the box already runs with the {recorded['runtime']} runtime",
                             "stop it first with `obsbox down`")
    if recorded and runtime == "auto":
        chosen = current()
        assert chosen is not None
        if isinstance(chosen, NativeRuntime):
            chosen.download = download
    else:
        chosen = choose(runtime, download=download, progress=progress)
    record_runtime({"runtime": chosen.name, "since": (recorded or {}).get("since", time.time())})
    report = chosen.up(samples=samples, progress=progress)
    if isinstance(chosen, NativeRuntime):
        _publish_targets(chosen)
        report.notes.append(_own_service_note(report))
    return report


def _own_service_note(report: UpReport) -> str:
    if any(s.name == "collector" for s in report.started):
        return ("your own services: push OTLP to http://127.0.0.1:4318 (obsbox's default), nothing to register; "
                "a /metrics endpoint instead: `obsbox scrape add 127.0.0.1:PORT`")
    return ("your own services: no collector runs, so serve /metrics (OBSBOX_METRICS_PORT=9464) and "
            "`obsbox scrape add 127.0.0.1:9464`")


def _publish_targets(runtime: NativeRuntime) -> Path | None:
    """List the user's scrape targets where the native Prometheus discovers files; the file, or None before `up`."""
    sd_file = runtime.record().sd_file
    if not sd_file:
        return None
    return targets.publish(targets.load(runtime.state), Path(sd_file).parent)


def add_target(address: str, service_name: str | None) -> tuple[list[targets.Target], Path | None]:
    """Keep a pull endpoint of the user's and, when the native box runs, have Prometheus scrape it now."""
    runtime = _targets_runtime()
    kept = targets.add(state_dir(), address, service_name)
    return kept, _publish_targets(runtime) if runtime else None


def remove_target(address: str) -> list[targets.Target]:
    runtime = _targets_runtime()
    kept = targets.remove(state_dir(), address)
    if runtime:
        _publish_targets(runtime)
    return kept


def list_targets() -> list[targets.Target]:
    return targets.load(state_dir())


def _targets_runtime() -> NativeRuntime | None:
    runtime = current()
    if isinstance(runtime, DockerRuntime):
        raise UsageError("obsbox scrape lists targets for the native runtime; this box runs in Docker",
                         "push OTLP to http://127.0.0.1:4318 (the collector), or put the target in a file of "
                         "backends/prometheus/targets/ with host.docker.internal:PORT (docs/stack.md)")
    return runtime if isinstance(runtime, NativeRuntime) else None


def down(*, purge: bool = False, progress: Progress) -> bool:
    """Stop what `up` started; False when nothing was recorded as running."""
    runtime = current()
    if runtime is None:
        if purge:
            NativeRuntime(state_dir()).down(purge=True, progress=progress)
        return False
    runtime.down(purge=purge, progress=progress)
    forget_runtime()
    return True


def status() -> StatusReport:
    runtime = current()
    return runtime.status() if runtime is not None else StatusReport(None)


def urls() -> dict[str, str]:
    runtime = current()
    return runtime.urls() if runtime is not None else {}


def url_of(component: str) -> str:
    """The URL of a running component; NotRunningError naming what is missing."""
    found = urls().get(component)
    if not found:
        hint = "start the box with `obsbox up`"
        if component in COMPONENTS and component not in BUILDABLE:
            # Natively, what `obsbox build` cannot build runs only from a binary on PATH.
            hint += f" ({component} needs Docker, or its binary on PATH for the native runtime)"
        raise NotRunningError(f"{component} is not running", hint)
    return found


__all__ = ["add_target", "choose", "current", "down", "list_targets", "remove_target",
           "status", "up", "url_of", "urls"]
