"""Native configs rendered from the stack tree: the same files compose mounts, with container hostnames rewritten
to 127.0.0.1 *and the native ports*, container paths mapped to the tree's host paths, and options the local
binary's version does not know removed.

>>> from obsbox.stack.compose import StackTree
from obsbox.stack.errors import UsageError
>>> config, sd_file = render_prometheus(StackTree.load(), ports={"prometheus": 19090, "alertmanager": 19093},
...                                     version="2.42.0", state=Path("/tmp/obsbox-doc"))
>>> config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
['127.0.0.1:19093']
>>> "otlp" in config
False

What the containers reach as `alertmanager:9093` the native Prometheus reaches as `127.0.0.1:<alertmanager port>`;
targets of components that do not run natively (collector, Loki, Pyroscope, Jaeger, Grafana) are dropped rather than
left to fail every scrape. The Alertmanager config goes through obsbox.stack.render (notification integrations from
OBSBOX_ALERT_* variables) before its URLs are rewritten the same way.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from obsbox.stack.components import COMPONENTS
from obsbox.stack.compose import StackTree
from obsbox.stack.errors import UsageError
from obsbox.stack.render import NATIVE_JAEGER_PORTS, render_alertmanager_config

# Top-level and global keys that Prometheus 2.x rejects (they came with 3.x); dropped when rendering for a 2.x binary.
_PROMETHEUS_3_ONLY_TOP = ("otlp", "runtime")
_PROMETHEUS_3_ONLY_GLOBAL = ("metric_name_validation_scheme", "metric_name_escaping_scheme",
                             "convert_classic_histograms_to_nhcb", "always_scrape_classic_histograms",
                             "scrape_protocols", "scrape_native_histograms")
_PROMETHEUS_3_ONLY_SCRAPE = _PROMETHEUS_3_ONLY_GLOBAL + ("fallback_scrape_protocol",)
_URL_HOST = re.compile(r"(?<=//)([A-Za-z0-9_.-]+):(\d+)")

SAMPLES_SD_NAME = "obsbox-samples"


def major(version: str | None) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def _rewrite_hostport(tree: StackTree, ports: dict[str, int]) -> Callable[[str], str | None]:
    """A function mapping 'host:port' as containers see it to '127.0.0.1:port' natively (None: not available)."""
    names = tree.host_names()

    def rewrite(hostport: str) -> str | None:
        host, _, port_s = hostport.rpartition(":")
        if host in ("localhost", "127.0.0.1", "0.0.0.0"):
            component: str | None = "prometheus"
        else:
            component = names.get(host)
        if component is None:
            return hostport  # not a box component (a user's own target): keep as is
        try:
            port = int(port_s)
        except ValueError:
            return None
        if component not in ports:
            return None
        if COMPONENTS[component].fixed_port:
            # Natively it listens where its config says: the container's port, except Jaeger's moved ones.
            return f"127.0.0.1:{NATIVE_JAEGER_PORTS.get(port, port) if component == 'jaeger' else port}"
        if port == tree.container_port(component):
            return f"127.0.0.1:{ports[component]}"
        return None

    return rewrite


def _rewrite_urls(value: Any, rewrite: Callable[[str], str | None]) -> Any:
    """Rewrite every http://host:port inside strings of a config (alert webhooks, remote_write urls)."""
    if isinstance(value, dict):
        return {k: _rewrite_urls(v, rewrite) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_urls(v, rewrite) for v in value]
    if isinstance(value, str):
        return _URL_HOST.sub(lambda m: rewrite(m.group(0)) or m.group(0), value)
    return value


def render_prometheus(
    tree: StackTree, *, ports: dict[str, int], version: str | None, state: Path,
    scrape_interval: str | None = None, evaluation_interval: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """The native Prometheus config, and the file_sd file where the native runtime lists the sample services."""
    source = tree.config_file("prometheus", "--config.file", "backends/prometheus/prometheus.yml")
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(source.read_text()) or {})
    rewrite = _rewrite_hostport(tree, ports)
    sd_dir = state / "file_sd"
    sd_dir.mkdir(parents=True, exist_ok=True)
    samples_file: Path | None = None

    glob = config.setdefault("global", {})
    if scrape_interval:
        glob["scrape_interval"] = scrape_interval
        # A timeout longer than the interval is rejected; equal is the most a shortened interval allows.
        glob["scrape_timeout"] = scrape_interval
    if evaluation_interval:
        glob["evaluation_interval"] = evaluation_interval
    v2 = major(version) < 3
    if v2:
        for key in _PROMETHEUS_3_ONLY_TOP:
            config.pop(key, None)
        for key in _PROMETHEUS_3_ONLY_GLOBAL:
            glob.pop(key, None)

    rule_files = []
    for pattern in config.get("rule_files") or []:
        host = tree.host_path("prometheus", str(pattern))
        if host is None and not PurePosixPath(str(pattern)).is_absolute():
            host = source.parent / str(pattern)
        rule_files.append(str(host) if host is not None else str(pattern))
    if rule_files:
        config["rule_files"] = rule_files

    jobs = []
    for job in config.get("scrape_configs") or []:
        job = dict(job)
        if v2:
            for key in _PROMETHEUS_3_ONLY_SCRAPE:
                job.pop(key, None)
        if scrape_interval and "scrape_interval" in job:
            job["scrape_interval"] = scrape_interval
            if "scrape_timeout" in job:
                job.pop("scrape_timeout")
        statics = []
        for static in job.get("static_configs") or []:
            targets = [t for t in (rewrite(str(t)) for t in static.get("targets") or []) if t]
            if targets:
                statics.append({**static, "targets": targets})
        if "static_configs" in job:
            job["static_configs"] = statics
        file_sds = []
        for sd in job.get("file_sd_configs") or []:
            files = []
            for pattern in sd.get("files") or []:
                name = PurePosixPath(str(pattern)).name
                files.append(str(sd_dir / name))
                if samples_file is None:
                    samples_file = sd_dir / (name.replace("*", SAMPLES_SD_NAME) if "*" in name else name)
            file_sds.append({**sd, "files": files})
        if "file_sd_configs" in job:
            job["file_sd_configs"] = file_sds
        if statics or file_sds or not ({"static_configs", "file_sd_configs"} & set(job)):
            jobs.append(job)
    config["scrape_configs"] = jobs

    alerting = config.get("alerting") or {}
    for am in alerting.get("alertmanagers") or []:
        for static in am.get("static_configs") or []:
            static["targets"] = [t for t in (rewrite(str(t)) for t in static.get("targets") or []) if t]
    # remote_write/remote_read to components that do not run here would only log errors.
    for key in ("remote_write", "remote_read"):
        kept = [rw for rw in config.get(key) or [] if _url_available(str(rw.get("url", "")), rewrite)]
        if kept:
            config[key] = _rewrite_urls(kept, rewrite)
        else:
            config.pop(key, None)

    if samples_file is None:
        # The tree has no file_sd job: add one, so the sample services' pull endpoints are still scraped.
        samples_file = sd_dir / f"{SAMPLES_SD_NAME}.json"
        config["scrape_configs"].append({"job_name": "obsbox-services", "file_sd_configs": [{"files": [str(samples_file)]}]})
    return config, samples_file


def _url_available(url: str, rewrite: Callable[[str], str | None]) -> bool:
    match = _URL_HOST.search(url)
    return match is None or rewrite(match.group(0)) is not None


def render_alertmanager(tree: StackTree, *, ports: dict[str, int]) -> dict[str, Any]:
    """The native Alertmanager config: notification integrations from OBSBOX_ALERT_*, templates and URLs mapped."""
    source = tree.config_file("alertmanager", "--config.file", "backends/alertmanager/alertmanager.yml")
    templates = tree.host_path("alertmanager", "/etc/alertmanager/templates")
    try:
        text = render_alertmanager_config(source.read_text(), os.environ, templates_dir=templates)
    except ValueError as e:
        raise UsageError(str(e), "fix or unset that OBSBOX_ALERT_* variable (docs/stack.md)") from None
    config = yaml.safe_load(text) or {}
    return dict(_rewrite_urls(config, _rewrite_hostport(tree, ports)))


def dump(config: dict[str, Any], path: Path) -> Path:
    """Write a rendered config readable by its owner only: the Alertmanager one may hold notification secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# Rendered by obsbox for the native runtime; edit the stack tree, not this file.\n"
                  + yaml.safe_dump(config, sort_keys=False))
    return path

