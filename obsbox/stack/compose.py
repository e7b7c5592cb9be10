"""The stack tree as compose sees it: services, images, published ports and bind mounts of stack.yml.

>>> from obsbox.stack.compose import StackTree
>>> tree = StackTree.load()
>>> tree.service_of("alertmanager")[0]
'alertmanager'
>>> tree.host_path("prometheus", "/etc/obsbox/alerts/x.rules.yml") == tree.root / "alerts" / "x.rules.yml"
True

Both runtimes read the tree through this: the docker runtime for ports and profiles, the native runtime to find
the host file behind each path a container sees (and which hostnames mean which component).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from obsbox.stack.components import COMPONENTS
from obsbox.stack.tree import stack_root


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
