"""The native runtime: the box's components as supervised local processes, for machines without Docker.

>>> from obsbox.stack.native import NativeRuntime
>>> runtime = NativeRuntime()                      # doctest: +SKIP
>>> report = runtime.up(samples=shop_processes(), progress=print)   # doctest: +SKIP

Each component gets `<state>/native/<name>/` with its rendered config, data dir, log file and supervisor state
file. Ports come from OBSBOX_<NAME>_PORT (0 = any free port) and are kept in `<state>/native/record.json`, so
every later command (status, chaos, top, down) finds the components where `up` put them. OBSBOX_SCRAPE_INTERVAL
and OBSBOX_EVALUATION_INTERVAL shorten Prometheus' intervals (the end-to-end test uses them; the rules stay as
they are).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from obsbox.stack import binaries, process
from obsbox.stack.components import COMPONENTS, Component, port_setting
from obsbox.stack.compose import StackTree
from obsbox.stack.errors import (
    ComponentFailedError,
    DownloadError,
    MissingPackageError,
    NotRunningError,
    StackError,
    UsageError,
)
from obsbox.stack.health import firing_alerts, http_ok
from obsbox.stack.launch import LAUNCHERS, Launch, LaunchContext
from obsbox.stack.model import ComponentStatus, ProcessSpec, Progress, Started, StatusReport, UpReport
from obsbox.stack.native_config import major
from obsbox.stack.native_record import NativeRecord, Running
from obsbox.stack.ports import check_ports, free_port
from obsbox.stack.state import grafana_password, write_json

# Start order: Alertmanager before Prometheus (so the first alerts have somewhere to go). Processes handed over
# with `up(samples=...)` start after the box, in the order given.
BACKEND_ORDER = ("alertmanager", "prometheus", "loki", "pyroscope", "jaeger", "collector", "grafana")


@dataclass
class _Plan:
    run: dict[str, Path]          # component → binary
    unavailable: dict[str, str]   # component → why, and how to get it
    failed_downloads: list[str]   # components `--download` could not fetch (named in `unavailable` too)


SAMPLES_OTLP_OFF_NOTE = ("no collector: the sample services' OTLP export is off (OTEL_*_EXPORTER=none); "
                         "Prometheus scrapes their /metrics")


def sample_export_off(env: dict[str, str], *, collector: bool) -> bool:
    """Without a collector, switch the sample services' OTLP export off in `env`; True when it did.

    Pushing to an address where nothing listens would only drop telemetry and, after a while, fire the
    TelemetryExportDropping alert for a setup that is working as intended. A user's own endpoint or exporter
    choice in the environment stands.
    """
    if collector or env.get("OBSBOX_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    for signal in ("TRACES", "METRICS", "LOGS"):
        env.setdefault(f"OTEL_{signal}_EXPORTER", "none")
    return True


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number", f"set {name} to seconds, e.g. 60") from None


class NativeRuntime:
    name = "native"

    def __init__(self, state: Path, tree: StackTree | None = None, *, download: bool = False,
                 docker_reason: str | None = None) -> None:
        self.state = state
        self._specs: dict[str, ProcessSpec] = {}
        self.root = state / "native"
        self._tree = tree
        self.sd_file: Path | None = None
        self.download = download
        self.docker_reason = docker_reason
        self.start_timeout = _env_float("OBSBOX_START_TIMEOUT", 90.0)
        self.max_restarts = int(_env_float("OBSBOX_MAX_RESTARTS", 3))

    # --- paths and records ------------------------------------------------------------------------------------
    @property
    def tree(self) -> StackTree:
        if self._tree is None:
            self._tree = StackTree.load()
        return self._tree

    def _dir(self, name: str) -> Path:
        return self.root / name

    def _state_file(self, name: str) -> Path:
        return self._dir(name) / "supervisor.json"

    def _log_file(self, name: str) -> Path:
        return self._dir(name) / f"{name}.log"

    def record(self) -> NativeRecord:
        return NativeRecord.load(self.root / "record.json")

    def _save(self, record: NativeRecord) -> None:
        record.save(self.root / "record.json")

    # --- planning ---------------------------------------------------------------------------------------------
    def plan(self, progress: Progress) -> _Plan:
        run: dict[str, Path] = {}
        unavailable: dict[str, str] = {}
        failed_downloads: list[str] = []
        for comp in COMPONENTS.values():
            binary = binaries.find_binary(comp)
            failed: DownloadError | None = None
            if binary is None and self.download and comp.native and comp.release is not None:
                try:
                    binary = binaries.download(comp, progress=progress)
                except DownloadError as e:
                    if comp.name == "prometheus":
                        raise  # nothing runs without it
                    failed = e  # the others are optional: named as unavailable, and the rest runs
            if binary is not None and comp.native:
                run[comp.name] = binary
            else:
                unavailable[comp.name] = f"download failed: {failed.message}" if failed else self._why(comp, binary)
                if failed:
                    failed_downloads.append(comp.name)
        missing = [n for n in BACKEND_ORDER if n not in run]
        if "prometheus" in missing:
            raise StackError(
                "the native runtime needs Prometheus and no prometheus binary was found on PATH or in "
                f"{binaries.cache_dir()}",
                COMPONENTS["prometheus"].install_hint,
            )
        return _Plan(run, unavailable, failed_downloads)

    def _why(self, comp: Component, binary: Path | None) -> str:
        if binary is not None:
            return f"found {binary}, but the native runtime cannot run {comp.name} yet (it runs with Docker)"
        names = " or ".join(f"`{b}`" for b in comp.binaries)
        return f"no {names} binary on PATH or in {binaries.cache_dir()}; to get it: {comp.install_hint}"

    # --- up ---------------------------------------------------------------------------------------------------
    def up(self, *, samples: Sequence[ProcessSpec] = (), progress: Progress) -> UpReport:
        """Start the box's components found here, then `samples` (or those of the last `up` until a `down`)."""
        record = self.record()
        specs = list(samples) or list(record.samples)
        for spec in specs:
            missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
            if missing:
                raise MissingPackageError(
                    f"{spec.name} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                    "installed", spec.install_hint or "install them into the Python running obsbox")
        self.root.mkdir(parents=True, exist_ok=True)
        plan = self.plan(progress)
        known = record.components
        want = [n for n in BACKEND_ORDER if n in plan.run]
        self._specs = {spec.name: spec for spec in specs}
        sample_names = list(self._specs)

        # Which need starting, and on which ports (kept from the last `up`, so URLs stay stable).
        to_start: list[str] = []
        ports: dict[str, int] = {}
        for name in want + sample_names:
            prior = known.get(name)
            if prior is not None and self._supervised(name).alive:
                ports[name] = prior.port
                continue
            ports[name] = self._explicit_port(name) or (prior.port if prior else 0) or self._port_for(name)
            to_start.append(name)
        check_ports({n: ports[n] for n in to_start},
                    settable=[n for n in to_start if not (n in COMPONENTS and COMPONENTS[n].fixed_port)])

        report = UpReport("native", unavailable=dict(plan.unavailable), note=self.docker_reason,
                          failed_downloads=plan.failed_downloads)
        for name in want:
            comp = COMPONENTS[name]
            url = f"http://127.0.0.1:{ports[name]}"
            if name not in to_start:
                report.started.append(Started(name, url, None))
                continue
            version = binaries.binary_version(plan.run[name])
            known[name] = Running(port=ports[name], url=url, health=comp.health_url(ports[name]), kind="backend",
                                  version=version, binary=str(plan.run[name]))
        record.unavailable = dict(plan.unavailable)
        record.samples = specs
        self._save(record)
        for name in want:
            if name in to_start:
                info = known[name]
                launch = self._launch(name, Path(str(info.binary)), info.version, ports)
                if launch.sd_file is not None:
                    self.sd_file = launch.sd_file  # kept in the record: where the sample services get listed
                report.started.append(self._start(name, launch.argv, info.health, info.url,
                                                  {**os.environ, **launch.env}, progress))
        if self.sd_file is not None:
            record.sd_file = str(self.sd_file)
        self._save(record)
        if "grafana" in want:
            report.grafana_password, report.password_is_new = grafana_password(self.state)
        prometheus_version = known["prometheus"].version if "prometheus" in known else None
        if "collector" in want and major(prometheus_version) < 3:
            report.unavailable["collector→prometheus"] = (
                f"Prometheus {prometheus_version} has no OTLP receiver, so metrics pushed to the "
                "collector do not reach it; the sample services are scraped instead (Prometheus 3 lifts this)")
        headless = [n for n in want if (Path(str(known[n].binary)).parent / "NO-WEB-UI").exists()]
        if headless:
            report.notes.append(
                f"{', '.join(headless)}: built from source without {'its' if len(headless) == 1 else 'their'} web "
                "UI; the APIs answer (e.g. /api/v1/query, /api/v2/alerts, /api/traces), and Grafana (with Docker) "
                "is where to look")
        if sample_names:
            report.started.extend(self._start_samples(sample_names, ports, to_start, record, progress,
                                                      report.notes))
            self._save(record)
        return report

    def _port_for(self, name: str) -> int:
        if name in COMPONENTS and COMPONENTS[name].fixed_port:
            return COMPONENTS[name].default_port
        default = COMPONENTS[name].default_port if name in COMPONENTS else self._specs[name].default_port
        port = port_setting(name, default)
        return port or free_port()

    @staticmethod
    def _explicit_port(name: str) -> int:
        """A port the user set for this start (OBSBOX_<NAME>_PORT other than 0), which beats the recorded one."""
        if name in COMPONENTS and COMPONENTS[name].fixed_port:
            return 0
        return port_setting(name, 0)

    def _supervised(self, name: str) -> process.Supervised:
        return process.read_supervised(name, self._state_file(name))

    def _launch(self, name: str, binary: Path, version: str | None, ports: dict[str, int]) -> Launch:
        """Render the component's configs and return how to run it (obsbox.stack.launch owns each component's)."""
        launcher = LAUNCHERS.get(name)
        if launcher is None:
            raise UsageError(f"the native runtime cannot run {name}")
        return launcher(LaunchContext(self.tree, self._dir(name), binary, version, ports))

    def _start(self, name: str, argv: list[str], health: str, url: str, env: dict[str, str],
               progress: Progress) -> Started:
        progress(f"starting {name} on {url}")
        begin = time.monotonic()
        process.start_supervised(name, argv, state_file=self._state_file(name), log_file=self._log_file(name),
                                 env=env, max_restarts=self.max_restarts)
        self._wait_healthy(name, health, begin)
        seconds = time.monotonic() - begin
        progress(f"{name} ready in {seconds:.1f}s")
        return Started(name, url, seconds)

    def _wait_healthy(self, name: str, health: str, begin: float) -> None:
        deadline = begin + self.start_timeout
        while time.monotonic() < deadline:
            if http_ok(health, timeout=1.0):
                return
            sup = self._supervised(name)
            if sup.state == "exited":
                raise ComponentFailedError(
                    f"{name} exited with code {sup.exit_code} while starting:\n{self._tail(name)}",
                    f"see `obsbox logs {name}` ({self._log_file(name)})",
                )
            time.sleep(0.25)
        raise ComponentFailedError(
            f"{name} did not become healthy within {self.start_timeout:.0f}s ({health}):\n{self._tail(name)}",
            f"see `obsbox logs {name}`; a slow machine may need OBSBOX_START_TIMEOUT=<seconds>",
        )

    def _tail(self, name: str, lines: int = 8) -> str:
        try:
            text = self._log_file(name).read_text(errors="replace").splitlines()
        except OSError:
            return "  (no log)"
        return "\n".join("  " + line for line in text[-lines:])

    def _start_samples(self, names: list[str], ports: dict[str, int], to_start: list[str],
                       record: NativeRecord, progress: Progress, notes: list[str]) -> list[Started]:
        known = record.components
        env = os.environ.copy()
        for name in names:
            if self._specs[name].url_env:
                env[str(self._specs[name].url_env)] = f"http://127.0.0.1:{ports[name]}"
        if "collector" in ports:
            env.setdefault("OBSBOX_ENDPOINT", f"http://127.0.0.1:{ports['collector']}")
        started = []
        if any(n in to_start for n in names):
            record.samples_otlp_off = sample_export_off(env, collector="collector" in ports)
        for name in names:
            url = f"http://127.0.0.1:{ports[name]}"
            if name not in to_start:
                started.append(Started(name, url, None))
                continue
            spec = self._specs[name]
            health = url + spec.health_path
            known[name] = Running(port=ports[name], url=url, health=health, kind="sample")
            started.append(self._start(name, spec.command("127.0.0.1", ports[name]), health, url, env, progress))
        if record.samples_otlp_off:
            notes.append(SAMPLES_OTLP_OFF_NOTE)
        # Metrics reach Prometheus one way only: pushed through the collector when Prometheus can take OTLP
        # (3.x), else scraped from the services' /metrics (listed for file discovery). Both would count twice.
        pushed = "collector" in ports and "prometheus" in known and major(known["prometheus"].version) >= 3
        self._write_targets(record, [] if pushed else [ports[n] for n in names])
        return started

    @staticmethod
    def _write_targets(record: NativeRecord, ports: list[int]) -> None:
        sd = record.sd_file
        if sd:
            groups = [{"targets": [f"127.0.0.1:{p}" for p in ports], "labels": {"obsbox_runtime": "native"}}]
            write_json(Path(sd), groups if ports else [])

    # --- down / status / logs ---------------------------------------------------------------------------------
    def down(self, *, purge: bool, progress: Progress) -> None:
        record = self.record()
        names = [s.name for s in record.samples][::-1] + list(BACKEND_ORDER)[::-1]
        names += [n for n in record.components if n not in names]
        for name in names:
            if self._state_file(name).exists():
                if self._supervised(name).alive:
                    progress(f"stopping {name}")
                process.stop_supervised(name, self._state_file(name))
        record.samples = []
        self._save(record)
        sd = record.sd_file
        if sd and Path(sd).exists():
            write_json(Path(sd), [])
        if purge and self.root.exists():
            progress(f"removing {self.root}")
            shutil.rmtree(self.root)

    def urls(self) -> dict[str, str]:
        return {n: c.url for n, c in self.record().components.items()}

    def status(self) -> StatusReport:
        record = self.record()
        report = StatusReport("native")
        for name, info in record.components.items():
            sup = self._supervised(name)
            if sup.state == "absent":
                continue
            state = sup.state
            if sup.alive:
                state = "healthy" if http_ok(info.health, timeout=2.0) else "running"
            report.components.append(ComponentStatus(
                name, "native", state, url=info.url, version=info.version,
                pid=sup.pid if sup.alive else None, kind=info.kind, restarts=sup.restarts,
                exit_code=sup.exit_code if state in ("exited", "stopped") else None,
            ))
        for name, reason in record.unavailable.items():
            report.components.append(ComponentStatus(name, "native", "unavailable", reason=reason))
        urls = {c.name: c.url for c in report.components if c.state in ("healthy", "running")}
        report.alerts, report.alerts_error = firing_alerts(urls.get("prometheus"), urls.get("alertmanager"))
        return report

    def logs(self, component: str | None, *, lines: int, follow: bool, write: Callable[[str], None]) -> int:
        """The last `lines` of the component's log file (or every one), then what is written while `follow`."""
        from obsbox.stack.logs import tail

        tail(self.log_files(component), lines=lines, follow=follow, write=write)
        return 0

    def log_files(self, component: str | None) -> list[tuple[str, str]]:
        names = [component] if component else list(self.record().components)
        files = [(n, str(self._log_file(n))) for n in names if self._log_file(n).exists()]
        if component and not files:
            raise NotRunningError(f"no log for {component!r} in {self.root}",
                                  "components with logs: " + ", ".join(self.record().components))
        return files

