"""The stack tree as compose sees it: services, images, published ports and bind mounts of stack.yml.

>>> from obsbox.stack.compose import StackTree
>>> tree = StackTree.load()
>>> tree.service_of("alertmanager")[0]
'alertmanager'
>>> tree.host_path("prometheus", "/etc/obsbox/alerts/x.rules.yml") == tree.root / "alerts" / "x.rules.yml"
True

Both runtimes read the tree through this: the docker runtime for ports and profiles, the native runtime to find
the host file behind each path a container sees (and which hostnames mean which component).

`compose_cli()` finds the real Docker Compose and `load_project()` has it load the tree as `docker compose config`
does (interpolation of .env, profiles, merge, validation), for `obsbox check` and the tests:

>>> cli = compose_cli()                                              # doctest: +SKIP
>>> project = load_project(cli, tree.root, env={"OBSBOX_GRAFANA_PASSWORD": "x"}).project   # doctest: +SKIP
>>> project["services"]["prometheus"]["image"]                      # doctest: +SKIP
'prom/prometheus:v3.14.0'
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from obsbox.stack.components import COMPONENTS
from obsbox.stack.tree import pinned_images, stack_root

COMPOSE_PIN = "DOCKER_COMPOSE_VERSION"  # .env: the Compose the tests load stack.yml with (built into the cache)


@dataclass
class StackTree:
    """The stack tree (stack.yml and the folders it mounts), read for the native runtime."""

    root: Path
    compose: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path | None = None) -> StackTree:
        if root is None:
            # OBSBOX_STACK_DIR: run a copy of the tree kept elsewhere (a user's modified one; the tests' own).
            explicit = os.environ.get("OBSBOX_STACK_DIR")
            root = Path(explicit) if explicit else stack_root()
        compose_file = root / "stack.yml"
        data = yaml.safe_load(compose_file.read_text()) if compose_file.exists() else {}
        return cls(root, data if isinstance(data, dict) else {})

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        services = self.compose.get("services") or {}
        return {k: v for k, v in services.items() if isinstance(v, dict)}

    def service_of(self, component: str) -> tuple[str, dict[str, Any]] | None:
        """The compose service that runs `component` (recognised by its image), if the tree has one."""
        hint = COMPONENTS[component].image_hint
        for name, svc in self.services.items():
            image = self.interpolate(str(svc.get("image", "")))
            repo = image.split("/")[-1].split("@")[0].split(":")[0]
            if hint in repo or (not repo and component in name):
                return name, svc
        return None

    def interpolate(self, text: str) -> str:
        """${VAR} and ${VAR:-default} as compose reads them from the tree's .env."""
        env = self.dotenv()
        return re.sub(
            r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}",
            lambda m: env.get(m.group(1)) or (m.group(2) or ""),
            text,
        )

    def dotenv(self) -> dict[str, str]:
        values: dict[str, str] = {}
        path = self.root / ".env"
        if path.exists():
            for line in path.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, _, value = line.partition("=")
                    values[key.strip()] = value.strip().strip("\"'")
        return values

    def host_names(self) -> dict[str, str]:
        """Every name a container may use for a component (service name, container_name, hostname) → component."""
        names: dict[str, str] = {}
        for component in COMPONENTS:
            found = self.service_of(component)
            if found is None:
                continue
            name, svc = found
            names[name] = component
            for key in ("container_name", "hostname"):
                if svc.get(key):
                    names[str(svc[key])] = component
        return names

    def container_port(self, component: str) -> int:
        """The component's main port inside its container (the first published one), else its default."""
        found = self.service_of(component)
        if found is not None:
            for spec in found[1].get("ports") or []:
                target = spec.get("target") if isinstance(spec, dict) else str(spec).rsplit(":", 1)[-1]
                try:
                    return int(str(target).split("/")[0].split("-")[0])
                except ValueError:
                    continue
        return COMPONENTS[component].default_port

    def mounts(self, component: str) -> list[tuple[PurePosixPath, Path]]:
        """(container path, host path) of each bind mount of the component's service, longest container path first."""
        found = self.service_of(component)
        result: list[tuple[PurePosixPath, Path]] = []
        if found is None:
            return result
        for vol in found[1].get("volumes") or []:
            if isinstance(vol, dict):
                if vol.get("type", "bind") != "bind":
                    continue
                source = self.interpolate(str(vol.get("source", "")))
                target = str(vol.get("target", ""))
            else:
                parts = self.interpolate(str(vol)).split(":")
                if len(parts) < 2:
                    continue
                source, target = parts[0], parts[1]
            if not source.startswith((".", "/")):
                continue  # a named volume: data, not config
            result.append((PurePosixPath(target), (self.root / source).resolve()))
        result.sort(key=lambda m: len(str(m[0])), reverse=True)
        return result

    def host_path(self, component: str, container_path: str) -> Path | None:
        """Where a path the container sees lives in the tree (glob characters kept)."""
        path = PurePosixPath(container_path)
        for target, source in self.mounts(component):
            if path == target:
                return source
            try:
                rel = path.relative_to(target)
            except ValueError:
                continue
            return source / rel
        return None

    def config_file(self, component: str, flag: str, fallback: str) -> Path:
        """The host path of the file the service's command passes with `flag` (e.g. --config.file)."""
        found = self.service_of(component)
        if found is not None:
            command = found[1].get("command") or []
            args = command.split() if isinstance(command, str) else [str(a) for a in command]
            for i, arg in enumerate(args):
                value = None
                if arg.startswith(flag + "="):
                    value = arg.split("=", 1)[1]
                elif arg == flag and i + 1 < len(args):
                    value = args[i + 1]
                if value:
                    host = self.host_path(component, value)
                    if host is not None and host.exists():
                        return host
        return self.root / fallback


def compose_cli() -> list[str] | None:
    """The command that runs Docker Compose v2+ here: the build pinned in .env in the cache (scripts/build-components.sh
    compose; it runs standalone as `docker-compose`), else the docker CLI's compose plugin, else a `docker-compose`
    on PATH; None when none answers `version`."""
    from obsbox.stack.binaries import cache_dir

    version = pinned_images().get(COMPOSE_PIN)
    candidates: list[list[str]] = []
    if version:
        candidates.append([str(cache_dir() / "compose" / version / "docker-compose")])
    docker = shutil.which("docker")
    if docker:
        candidates.append([docker, "compose"])
    standalone = shutil.which("docker-compose")
    if standalone:
        candidates.append([standalone])
    for cli in candidates:
        if compose_version(cli) is not None:
            return cli
    return None


def compose_version(cli: Sequence[str]) -> str | None:
    """'5.6.0' from `<cli> version --short`; None when it does not run or is Compose v1 (no --short)."""
    try:
        out = subprocess.run([*cli, "version", "--short"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.fullmatch(r"v?(\d+\.\d+\.\d+\S*)", out.stdout.strip())
    return match.group(1) if out.returncode == 0 and match and int(match.group(1).split(".")[0]) >= 2 else None


class ComposeLoadError(Exception):
    """Compose refused the project: `message` is Compose's own."""

    def __init__(self, command: list[str], message: str) -> None:
        super().__init__(message)
        self.command = command
        self.message = message


@dataclass
class LoadedProject:
    """The project as Compose normalised it (`config --format json`), and the warnings it printed while loading."""

    project: dict[str, Any]
    warnings: list[str]
    command: list[str]


def load_project(cli: Sequence[str], root: Path, *, profiles: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> LoadedProject:
    """`docker compose -f stack.yml --env-file .env [--profile P...] config --format json` on the tree at `root`,
    with the environment `env` (default: this process's). ComposeLoadError carries Compose's message."""
    cmd = [*cli, "-f", str(root / "stack.yml")]
    if (root / ".env").exists():
        cmd += ["--env-file", str(root / ".env")]
    cmd += [a for p in profiles for a in ("--profile", p)] + ["config", "--format", "json"]
    run_env = dict(os.environ if env is None else env)
    run_env.setdefault("PATH", os.environ.get("PATH", ""))
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=run_env)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ComposeLoadError(cmd, str(e)) from None
    said = list(dict.fromkeys(_log_message(line) for line in out.stderr.splitlines() if line.strip()))
    if out.returncode != 0:
        raise ComposeLoadError(cmd, "\n".join(said) or f"exit {out.returncode}")
    return LoadedProject(json.loads(out.stdout), said, cmd)


def _log_message(line: str) -> str:
    """The msg of Compose's logrus line (time="…" level=warning msg="…"), else the line."""
    match = re.search(r'level=(\w+) msg="((?:[^"\\]|\\.)*)"', line)
    if match is None:
        return line.strip()
    return f"{match.group(1)}: " + match.group(2).replace('\\"', '"')
