"""The docker runtime: `docker compose` drives the shipped stack.yml; the docker SDK answers "is there an engine?".

>>> from obsbox.stack.docker import DockerRuntime
>>> runtime = DockerRuntime(Path("~/.local/state/obsbox"))      # doctest: +SKIP
>>> runtime.compose_command("ps", "--format", "json")           # doctest: +SKIP
['docker', 'compose', '-p', 'obsbox', '-f', '/…/stack.yml', '--env-file', '/…/.env', 'ps', '--format', 'json']

Every docker CLI failure becomes a DockerError with the command, its exit code and stderr. Compose's own output
(image pull progress included) is streamed to the user while it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from obsbox.stack.components import COMPONENTS
from obsbox.stack.compose import StackTree
from obsbox.stack.errors import DockerError, RuntimeUnavailableError, UsageError
from obsbox.stack.health import firing_alerts, http_ok
from obsbox.stack.model import ComponentStatus, ProcessSpec, Progress, Started, StatusReport, UpReport
from obsbox.stack.ports import check_ports
from obsbox.stack.render import render_alertmanager_config
from obsbox.stack.state import grafana_password

PROJECT = "obsbox"
_DEFAULT_SOCKET = "unix:///var/run/docker.sock"
_NO_ENGINE_HINT = "start Docker (Docker Desktop, or `sudo systemctl start docker`), or use `--runtime native`"


def docker_cli() -> str | None:
    return shutil.which("docker")


def engine_available() -> tuple[bool, str]:
    """(True, version) when a Docker engine answers; else (False, why). Uses the docker SDK when installed.

    OBSBOX_DOCKER_SDK=0 asks the docker CLI instead (what a machine without the SDK does anyway).
    """
    if os.environ.get("OBSBOX_DOCKER_SDK", "1") != "0":
        try:
            import docker  # the optional `docker` extra; imported only when asked

            client = docker.from_env(timeout=3)
            try:
                return True, str(client.version().get("Version", "?"))
            finally:
                client.close()
        except ImportError:
            pass
        except Exception:  # the SDK raises DockerException, requests and socket errors alike
            return False, f"no Docker engine answers at {os.environ.get('DOCKER_HOST') or _DEFAULT_SOCKET}"
    cli = docker_cli()
    if cli is None:
        return False, "no docker CLI on PATH and no Docker engine"
    try:
        out = subprocess.run([cli, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True,
                             timeout=15)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"the docker CLI did not answer ({e})"
    if out.returncode != 0 or not out.stdout.strip():
        return False, f"no Docker engine answers ({_first_line(out.stderr) or 'docker version failed'})"
    return True, out.stdout.strip()


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


class DockerRuntime:
    name = "docker"

    def __init__(self, state: Path, tree: StackTree | None = None, *, docker: str | None = None) -> None:
        self.state = state
        self._tree = tree
        self.docker = docker or docker_cli() or "docker"

    @property
    def tree(self) -> StackTree:
        if self._tree is None:
            self._tree = StackTree.load()
        return self._tree

    def compose_command(self, *args: str) -> list[str]:
        root = self.tree.root
        cmd = [self.docker, "compose", "-p", PROJECT, "-f", str(root / "stack.yml")]
        if (root / ".env").exists():
            cmd += ["--env-file", str(root / ".env")]
        return cmd + list(args)

    # --- running the CLI --------------------------------------------------------------------------------------
    def compose_env(self) -> dict[str, str]:
        """The environment every compose command needs: stack.yml requires the Grafana password (Compose refuses
        to load it without, `logs` and `down` included) and mounts the rendered Alertmanager config."""
        env = os.environ.copy()
        password, _ = grafana_password(self.state)
        env["OBSBOX_GRAFANA_PASSWORD"] = password
        env["OBSBOX_ALERTMANAGER_CONFIG"] = str(self._alertmanager_config())
        return env

    def _alertmanager_config(self) -> Path:
        """stack.yml mounts this rendered copy: the shipped file plus the OBSBOX_ALERT_* notification settings."""
        source = self.tree.root / "backends" / "alertmanager" / "alertmanager.yml"
        try:
            text = render_alertmanager_config(source.read_text(), os.environ)
        except ValueError as e:
            raise UsageError(str(e), "fix or unset that OBSBOX_ALERT_* variable (docs/stack.md)") from None
        target = self.state / "docker" / "alertmanager.yml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target

    def run(self, *args: str, progress: Progress | None = None, timeout: float | None = None) -> str:
        """Run `docker compose … args`; stream its output to `progress`; return stdout; DockerError on failure."""
        cmd = self.compose_command(*args)
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.compose_env())
        except OSError as e:
            raise DockerError(cmd, 127, str(e), "install Docker with the compose plugin") from None
        out: list[str] = []
        err: list[str] = []
        readers = [threading.Thread(target=_pump, args=(proc.stdout, out, progress), daemon=True),
                   threading.Thread(target=_pump, args=(proc.stderr, err, progress), daemon=True)]
        for r in readers:
            r.start()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise DockerError(cmd, -9, "".join(err) + f"\n(timed out after {timeout:.0f}s)",
                              "see `obsbox logs` for the component that did not get ready") from None
        for r in readers:
            r.join()
        stderr = "".join(err)
        if code != 0:
            raise DockerError(cmd, code, stderr, _hint_for(stderr))
        return "".join(out)

    def check_compose(self) -> str:
        """The compose plugin's version; RuntimeUnavailableError when `docker compose` is missing."""
        cmd = [self.docker, "compose", "version", "--short"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RuntimeUnavailableError(f"cannot run {' '.join(cmd)}: {e}", "install Docker") from None
        if out.returncode != 0:
            raise RuntimeUnavailableError(
                f"the docker compose plugin is missing (`{' '.join(cmd)}` exited {out.returncode}: "
                f"{_first_line(out.stderr)})",
                "install the compose plugin (Debian: apt-get install docker-compose-plugin), or use --runtime native",
            )
        return out.stdout.strip()

    # --- the runtime ------------------------------------------------------------------------------------------
    def _port_specs(self, svc: dict[str, Any]) -> list[tuple[int, int]]:
        """(host port, container port) of each published port of a compose service."""
        specs = []
        for spec in svc.get("ports") or []:
            pair = _published(spec if isinstance(spec, dict) else self.tree.interpolate(str(spec)))
            if pair:
                specs.append(pair)
        return specs

    def published_ports(self) -> dict[str, int]:
        """component (or sample service) → the host port of its main endpoint (URLs are built from these)."""
        names = self.tree.host_names()
        ports: dict[str, int] = {}
        for svc_name, svc in self.tree.services.items():
            specs = self._port_specs(svc)
            if not specs:
                continue
            key = names.get(svc_name, svc_name)
            main = COMPONENTS[key].default_port if key in COMPONENTS else None
            ports[key] = next((host for host, target in specs if target == main), specs[0][0])
        return ports

    def _all_published(self, services: list[str] | None = None) -> dict[str, int]:
        """'service:port' → port for every published port (what the pre-start port check binds)."""
        return {f"{name}:{host}": host for name, svc in self.tree.services.items()
                if services is None or name in services for host, _ in self._port_specs(svc)}

    def _sample_profile_args(self, samples: bool) -> list[str]:
        profiles = {str(p) for svc in self.tree.services.values() for p in svc.get("profiles") or []}
        return ["--profile", "samples"] if samples and "samples" in profiles else []

    def up(self, *, samples: Sequence[ProcessSpec] = (), progress: Progress) -> UpReport:
        """Start the compose services; with `samples`, the compose file's `samples` profile (the shop's images
        stand for the processes handed over)."""
        # First: whether the password is new decides whether it is printed (once).
        password, new = grafana_password(self.state)
        self.check_compose()
        running = {c.name for c in self._ps() if c.state in ("healthy", "running", "starting")}
        profile = self._sample_profile_args(bool(samples))
        services = [s for s, svc in self.tree.services.items()
                    if not svc.get("profiles") or (profile and "samples" in svc.get("profiles", []))]
        wanted = {k: v for k, v in self._all_published(services).items() if k.split(":")[0] not in running}
        # check_ports wants component → port; the key keeps the service name in the message.
        check_ports({k.split(":")[0]: v for k, v in wanted.items()}, settable=())
        begin = time.monotonic()
        progress("starting the stack with docker compose (first run pulls images)")
        ready_at = self._up_watching(profile, begin, progress)
        report = UpReport("docker", grafana_password=password, password_is_new=new)
        urls = self.urls()
        total = time.monotonic() - begin
        for svc in services:
            key = self.tree.host_names().get(svc, svc)
            seconds = None if key in running else ready_at.get(key, total)
            report.started.append(Started(key, urls.get(key), seconds))
        return report

    def _up_watching(self, profile: list[str], begin: float, progress: Progress) -> dict[str, float]:
        """`compose up -d --wait`, while `ps` is polled to note when each component became healthy."""
        ready_at: dict[str, float] = {}
        failure: list[BaseException] = []

        def up() -> None:
            try:
                self.run(*profile, "up", "-d", "--wait", progress=progress, timeout=900)
            except BaseException as e:  # handed to the caller's thread below
                failure.append(e)

        worker = threading.Thread(target=up, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(2.0)
            try:
                for c in self._ps():
                    if c.state == "healthy" and c.name not in ready_at:
                        ready_at[c.name] = time.monotonic() - begin
            except DockerError:
                pass  # the project may not exist yet while images are pulled
        if failure:
            raise failure[0]
        return ready_at

    def down(self, *, purge: bool, progress: Progress) -> None:
        args = ["--profile", "samples", "down", "--remove-orphans"] if self._sample_profile_args(True) else [
            "down", "--remove-orphans"]
        if purge:
            args.append("--volumes")
        self.run(*args, progress=progress, timeout=300)

    def urls(self) -> dict[str, str]:
        return {name: f"http://127.0.0.1:{port}" for name, port in self.published_ports().items()}

    def _ps(self) -> list[ComponentStatus]:
        raw = self.run("ps", "--all", "--format", "json", timeout=60)
        names = self.tree.host_names()
        pids = _sdk_pids()
        result = []
        for item in _parse_ps(raw):
            service = str(item.get("Service") or item.get("Name") or "?")
            name = names.get(service, service)
            state = str(item.get("State", "")).lower()
            health = str(item.get("Health", "")).lower()
            publishers = {int(p.get("TargetPort") or 0): int(p["PublishedPort"])
                          for p in item.get("Publishers") or [] if p.get("PublishedPort")}
            if state == "running":
                if health == "":
                    # No health check inside the image (the collector's is FROM scratch): probe from the host.
                    probe = self._host_probe(name, publishers)
                    status = "running" if probe is None else ("healthy" if http_ok(probe) else "running")
                else:
                    status = {"healthy": "healthy", "starting": "starting"}.get(health, "running")
            elif state in ("exited", "dead"):
                status = "exited"
            elif state == "restarting":
                status = "restarting"
            else:  # created, paused, removing
                status = "stopped"
            main = COMPONENTS[name].default_port if name in COMPONENTS else None
            port = publishers.get(main or -1) or next(iter(publishers.values()), None)
            image = str(item.get("Image", ""))
            version = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else None
            result.append(ComponentStatus(
                name, "docker", status, url=f"http://127.0.0.1:{port}" if port else None, version=version,
                pid=(pids.get(str(item.get("Name"))) or None) if status != "exited" else None,
                exit_code=item.get("ExitCode") if status == "exited" else None,
                kind="sample" if "samples" in (self.tree.services.get(service, {}).get("profiles") or []) else "backend",
            ))
        return result

    @staticmethod
    def _host_probe(name: str, publishers: dict[int, int]) -> str | None:
        if name == "collector" and 13133 in publishers:
            return f"http://127.0.0.1:{publishers[13133]}/"
        if name in COMPONENTS and COMPONENTS[name].default_port in publishers:
            return f"http://127.0.0.1:{publishers[COMPONENTS[name].default_port]}{COMPONENTS[name].health_path}"
        return None

    def status(self) -> StatusReport:
        report = StatusReport("docker", self._ps())
        urls = {c.name: c.url for c in report.components if c.state in ("healthy", "running")}
        report.alerts, report.alerts_error = firing_alerts(urls.get("prometheus"), urls.get("alertmanager"))
        return report

    def log_files(self, component: str | None) -> list[tuple[str, str]]:
        return []

    def logs(self, component: str | None, *, lines: int, follow: bool, write: Callable[[str], None]) -> int:
        """`docker compose logs` of the component's service (or all), straight to the terminal; its exit code."""
        return subprocess.call(self.logs_command(component, follow, lines=lines), env=self.compose_env())

    def logs_command(self, component: str | None, follow: bool, *, lines: int = 200) -> list[str]:
        args = ["logs", "--tail", str(lines)]
        if follow:
            args.append("--follow")
        if component:
            found = self.tree.service_of(component) if component in _component_names() else None
            args.append(found[0] if found else component)
        return self.compose_command(*args)


def _sdk_pids() -> dict[str, int]:
    """Container name → host pid of the project's containers, from the docker SDK when it is installed and an
    engine answers (the CLI's `ps` does not report pids); {} otherwise."""
    if os.environ.get("OBSBOX_DOCKER_SDK", "1") == "0":
        return {}
    try:
        import docker

        client = docker.from_env(timeout=3)
    except Exception:  # no SDK, or no engine: pids are optional
        return {}
    try:
        containers = client.containers.list(all=True, filters={"label": f"com.docker.compose.project={PROJECT}"})
        return {str(c.name): int(c.attrs.get("State", {}).get("Pid") or 0) or 0 for c in containers}
    except Exception:
        return {}
    finally:
        client.close()


def _component_names() -> tuple[str, ...]:
    from obsbox.stack.components import COMPONENTS

    return tuple(COMPONENTS)





def _published(spec: Any) -> tuple[int, int] | None:
    """(host port, container port) of a compose port spec: "127.0.0.1:3000:3000", "3000:3000", or the long form
    {"published": 3000, "target": 3000}; None when nothing is published on the host."""
    try:
        if isinstance(spec, dict):
            if not spec.get("published"):
                return None
            return int(str(spec["published"]).split("-")[0]), int(str(spec.get("target")).split("-")[0])
        parts = str(spec).split("/")[0].split(":")
        if len(parts) < 2:
            return None
        return int(parts[-2].split("-")[0]), int(parts[-1].split("-")[0])
    except (TypeError, ValueError):
        return None


def _parse_ps(raw: str) -> list[dict[str, Any]]:
    """`docker compose ps --format json` prints a JSON array (older compose) or one object per line (newer)."""
    raw = raw.strip()
    if not raw:
        return []
    try:
        data = json.loads(raw)
        return [d for d in (data if isinstance(data, list) else [data]) if isinstance(d, dict)]
    except ValueError:
        items = []
        for line in raw.splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                items.append(obj)
        return items


def _pump(stream: IO[str] | None, sink: list[str], progress: Progress | None) -> None:
    if stream is None:
        return
    for line in stream:
        sink.append(line)
        if progress is not None:
            progress(line.rstrip("\n"))


def _hint_for(stderr: str) -> str:
    text = stderr.lower()
    # The docker CLI says "Cannot connect to the Docker daemon …"; Compose 5 "failed to connect to the docker API …".
    if any(m in text for m in ("cannot connect to the docker daemon", "is the docker daemon running",
                               "failed to connect to the docker api")):
        return _NO_ENGINE_HINT
    if "port is already allocated" in text or "address already in use" in text:
        return "another process holds a port the stack publishes; `obsbox status` or `ss -ltnp` shows which"
    if "pull access denied" in text or "manifest unknown" in text or "toomanyrequests" in text:
        return "an image could not be pulled; check the network and the tags in .env"
    if "is not a docker command" in text or "unknown command" in text:
        return "install the docker compose plugin, or use --runtime native"
    return "see the output above, and `obsbox logs` for the components"
