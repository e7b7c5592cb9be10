"""How each component runs as a local process: its config rendered from the stack tree, its argv and its env.

One function per component, registered in LAUNCHERS; the native runtime's loop calls them and knows no component
by name. Adding a component to the native box is one entry in obsbox.stack.components (binaries, ports, health,
pinned version) and one launcher here.

>>> from obsbox.stack.compose import StackTree
>>> ctx = LaunchContext(StackTree.load(), Path("/tmp/obsbox-doc/alertmanager"), Path("/usr/bin/alertmanager"),
...                     "0.34.0", {"alertmanager": 9093, "prometheus": 9090})
>>> LAUNCHERS["alertmanager"](ctx).argv[-1]                   # doctest: +SKIP
'--cluster.listen-address='
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from obsbox.stack.components import COMPONENTS
from obsbox.stack.compose import StackTree
from obsbox.stack.native_config import dump, major, render_alertmanager, render_prometheus
from obsbox.stack.render import (
    render_collector_config,
    render_grafana_provisioning,
    render_jaeger_config,
    render_loki_config,
    render_pyroscope_config,
)
from obsbox.stack.state import grafana_password, write_json


@dataclass(frozen=True)
class LaunchContext:
    """What a launcher gets: the tree, the component's own directory, its binary and version, every port in use."""

    tree: StackTree
    dir: Path                     # <state>/native/<name>: rendered configs, data/, the log
    binary: Path
    version: str | None
    ports: dict[str, int]         # component or sample service -> port, for everything this `up` runs

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def data(self) -> Path:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        return data

    @property
    def state(self) -> Path:
        """The state directory (<state>/native/<name> -> <state>)."""
        return self.dir.parents[1]

    @property
    def components(self) -> dict[str, int]:
        return {n: p for n, p in self.ports.items() if n in COMPONENTS}

    def write(self, relative: str | Path, text: str) -> Path:
        """Write a rendered config, pointing 127.0.0.1:<default port> at the ports Prometheus and Alertmanager
        really use here (they are configurable; the tree's files know only the defaults)."""
        for name in ("prometheus", "alertmanager"):
            default, actual = COMPONENTS[name].default_port, self.ports.get(name)
            if actual and actual != default:
                text = re.sub(rf"127\.0\.0\.1:{default}\b", f"127.0.0.1:{actual}", text)
        path = self.dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)   # on top of the caller's environment
    sd_file: Path | None = None   # Prometheus only: the file-discovery file where the sample services are listed


def prometheus(ctx: LaunchContext) -> Launch:
    config, sd_file = render_prometheus(
        ctx.tree, ports=ctx.components, version=ctx.version, state=ctx.dir,
        scrape_interval=os.environ.get("OBSBOX_SCRAPE_INTERVAL") or None,
        evaluation_interval=os.environ.get("OBSBOX_EVALUATION_INTERVAL") or None,
    )
    path = dump(config, ctx.dir / "prometheus.yml")
    if not sd_file.exists():
        write_json(sd_file, [])
    argv = [
        str(ctx.binary), f"--config.file={path}", f"--storage.tsdb.path={ctx.data}",
        f"--web.listen-address=127.0.0.1:{ctx.ports[ctx.name]}", "--web.enable-lifecycle",
        "--enable-feature=exemplar-storage", "--storage.tsdb.retention.size=1GB",
    ]
    if major(ctx.version) >= 3:
        argv.append("--web.enable-otlp-receiver")
    return Launch(argv, sd_file=sd_file)


def alertmanager(ctx: LaunchContext) -> Launch:
    path = dump(render_alertmanager(ctx.tree, ports=ctx.components), ctx.dir / "alertmanager.yml")
    return Launch([
        str(ctx.binary), f"--config.file={path}", f"--storage.path={ctx.data}",
        f"--web.listen-address=127.0.0.1:{ctx.ports[ctx.name]}",
        # An empty cluster address turns gossip off: no listener on 0.0.0.0:9094.
        "--cluster.listen-address=",
    ])


def loki(ctx: LaunchContext) -> Launch:
    source = ctx.tree.config_file("loki", "-config.file", "backends/loki/config.yaml").read_text()
    text = render_loki_config(source, data_dir=ctx.data, rules_dir=ctx.tree.root / "alerts" / "loki")
    return Launch([str(ctx.binary), f"-config.file={ctx.write('loki.yaml', text)}"])


def pyroscope(ctx: LaunchContext) -> Launch:
    source = ctx.tree.config_file("pyroscope", "-config.file", "backends/pyroscope/config.yaml").read_text()
    text = render_pyroscope_config(source, data_dir=ctx.data)
    return Launch([str(ctx.binary), f"-config.file={ctx.write('pyroscope.yaml', text)}"])


def jaeger(ctx: LaunchContext) -> Launch:
    source = (ctx.tree.root / "backends" / "jaeger" / "config.yaml").read_text()
    return Launch([str(ctx.binary), f"--config={ctx.write('jaeger.yaml', render_jaeger_config(source))}"])


def collector(ctx: LaunchContext) -> Launch:
    source = (ctx.tree.root / "collector" / "config.yaml").read_text()
    return Launch([str(ctx.binary), f"--config={ctx.write('collector.yaml', render_collector_config(source))}"])


def grafana(ctx: LaunchContext) -> Launch:
    src = ctx.tree.root / "backends" / "grafana" / "provisioning"
    for path in src.rglob("*.y*ml"):
        text = render_grafana_provisioning(path.read_text(), dashboards_dir=ctx.tree.root / "dashboards")
        ctx.write(Path("provisioning") / path.relative_to(src), text)
    # `grafana server` (10+) or the older `grafana-server`; both need the install's home for defaults.ini.
    binary = ctx.binary
    home = next((h for h in (binary.resolve().parents[1], Path("/usr/share/grafana"))
                 if (h / "conf" / "defaults.ini").exists()), binary.resolve().parents[1])
    sub = ["server"] if binary.name == "grafana" else []
    password, _ = grafana_password(ctx.state)
    return Launch([str(binary), *sub, f"--homepath={home}"], env={
        "GF_PATHS_DATA": str(ctx.data), "GF_PATHS_LOGS": str(ctx.dir / "logs"),
        "GF_PATHS_PLUGINS": str(ctx.dir / "plugins"), "GF_PATHS_PROVISIONING": str(ctx.dir / "provisioning"),
        "GF_SERVER_HTTP_ADDR": "127.0.0.1", "GF_SERVER_HTTP_PORT": str(COMPONENTS["grafana"].default_port),
        "GF_SECURITY_ADMIN_USER": "admin", "GF_SECURITY_ADMIN_PASSWORD": password,
        "GF_AUTH_ANONYMOUS_ENABLED": os.environ.get("OBSBOX_GRAFANA_ANONYMOUS", "false"),
        "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer", "GF_USERS_ALLOW_SIGN_UP": "false",
        "GF_ANALYTICS_REPORTING_ENABLED": "false", "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
    })


LAUNCHERS: dict[str, Callable[[LaunchContext], Launch]] = {
    "prometheus": prometheus, "alertmanager": alertmanager, "loki": loki, "pyroscope": pyroscope,
    "jaeger": jaeger, "collector": collector, "grafana": grafana,
}
