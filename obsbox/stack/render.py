"""Render the stack tree's configs for a runtime: native processes, another Prometheus major, notifications.

The files in the tree are written for the containers of stack.yml (hostnames such as ``prometheus``, paths such
as ``/etc/obsbox/alerts``, Prometheus 3). These functions turn them into what a given runtime can load:

>>> from obsbox.stack.tree import stack_root
>>> source = (stack_root() / "backends/prometheus/prometheus.yml").read_text()
>>> native = render_prometheus_config(source, major_version=2, hostname="127.0.0.1",
...                                   rules_dir=stack_root() / "alerts", targets_dir=Path("/tmp/targets"))
>>> "otlp:" in native, "alertmanager:9093" in native
(False, False)

Every function takes the file's text and returns new text; nothing here touches the disk.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CONTAINER_HOSTNAMES",
    "NATIVE_JAEGER_PORTS",
    "NOTIFICATION_VARIABLES",
    "localize_hostnames",
    "render_alertmanager_config",
    "render_collector_config",
    "render_grafana_provisioning",
    "render_jaeger_config",
    "render_loki_config",
    "render_prometheus_config",
]

#: The compose service names the configs use to reach each other.
CONTAINER_HOSTNAMES = ("collector", "prometheus", "alertmanager", "loki", "jaeger", "grafana")

#: Where Jaeger listens when the stack runs as local processes. In containers Jaeger and the collector both use
#: 4317/4318 (OTLP), 13133 (health) and 8888 (self-metrics); on one host the collector keeps them and Jaeger moves.
NATIVE_JAEGER_PORTS: Mapping[int, int] = {4317: 14317, 4318: 14318, 13133: 13134, 8888: 8889}

#: Environment variables read by render_alertmanager_config(), with what each one does.
NOTIFICATION_VARIABLES: Mapping[str, str] = {
    "OBSBOX_ALERT_RECEIVERS": "which receivers notify: 'page,ticket' (default), 'page' or 'ticket'",
    "OBSBOX_ALERT_WEBHOOK_URL": "POST every notification as JSON to this URL",
    "OBSBOX_ALERT_SLACK_WEBHOOK_URL": "post to this Slack incoming-webhook URL",
    "OBSBOX_ALERT_SLACK_CHANNEL": "Slack channel (optional; the webhook's own channel otherwise)",
    "OBSBOX_ALERT_EMAIL_TO": "send e-mail to this address (needs the next two)",
    "OBSBOX_ALERT_EMAIL_FROM": "sender address of the e-mails",
    "OBSBOX_ALERT_SMTP_SMARTHOST": "SMTP server as host:port",
    "OBSBOX_ALERT_SMTP_USERNAME": "SMTP login (optional)",
    "OBSBOX_ALERT_SMTP_PASSWORD": "SMTP password (optional)",
    "OBSBOX_ALERT_SMTP_REQUIRE_TLS": "'true' (default) or 'false'",
}

# Keys Prometheus 3 reads that Prometheus 2.x rejects ("field ... not found in type config.plain").
_PROMETHEUS_3_ONLY_KEYS = ("otlp",)
_CONTAINER_RULES_DIR = "/etc/obsbox/alerts"
_CONTAINER_TARGETS_DIR = "/etc/obsbox/targets"
_CONTAINER_TEMPLATES_DIR = "/etc/alertmanager/templates"
_CONTAINER_DASHBOARDS_DIR = "/etc/grafana/dashboards"
_HOST_PATTERN = re.compile(r"(?<![\w.-])(?P<host>" + "|".join(CONTAINER_HOSTNAMES) + r"|localhost):(?P<port>\d+)")
_ALL_INTERFACES = re.compile(r"0\.0\.0\.0:(?P<port>\d+)")


def localize_hostnames(text: str, hostname: str = "127.0.0.1") -> str:
    """Point ``service:port`` references to the stack's containers (and ``localhost:port``) at local processes.

    >>> localize_hostnames("endpoint: http://loki:3100/otlp  # job loki")
    'endpoint: http://127.0.0.1:3100/otlp  # job loki'
    >>> localize_hostnames("endpoint: jaeger:4317")
    'endpoint: 127.0.0.1:14317'

    Only a name directly followed by ``:PORT`` is rewritten, so job names and keys stay as they are. Jaeger's
    ports move to NATIVE_JAEGER_PORTS, where render_jaeger_config() makes a local Jaeger listen.
    """

    def local(match: re.Match[str]) -> str:
        port = int(match["port"])
        if match["host"] == "jaeger":
            port = NATIVE_JAEGER_PORTS.get(port, port)
        return f"{hostname}:{port}"

    return _HOST_PATTERN.sub(local, text)


def render_collector_config(source: str) -> str:
    """Return collector/config.yaml for a local otelcol-contrib process.

    Exporters go to 127.0.0.1 (Jaeger on its NATIVE_JAEGER_PORTS) and every listener binds 127.0.0.1 instead of
    0.0.0.0: on a host, nothing but local processes should reach it.
    """
    return localize_hostnames(source).replace("0.0.0.0", "127.0.0.1")


def render_jaeger_config(source: str) -> str:
    """Return backends/jaeger/config.yaml for a local Jaeger v2 process: listeners on 127.0.0.1, the ports it
    shares with the collector moved to NATIVE_JAEGER_PORTS, Prometheus (for the Monitor tab) at 127.0.0.1."""
    text = _ALL_INTERFACES.sub(
        lambda m: f"127.0.0.1:{NATIVE_JAEGER_PORTS.get(int(m['port']), int(m['port']))}", localize_hostnames(source)
    )
    config: dict[str, Any] = yaml.safe_load(text)
    for reader in config.get("service", {}).get("telemetry", {}).get("metrics", {}).get("readers", []):
        exporter = reader.get("pull", {}).get("exporter", {}).get("prometheus")
        if exporter is not None:
            exporter["host"] = "127.0.0.1"
            exporter["port"] = NATIVE_JAEGER_PORTS.get(exporter["port"], exporter["port"])
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def render_loki_config(source: str, *, data_dir: Path, rules_dir: Path) -> str:
    """Return backends/loki/config.yaml for a local Loki process.

    ``data_dir`` replaces the container's /loki (chunks, index, compactor, ruler scratch space); ``rules_dir`` is
    the directory that holds the tenant folder ``fake/`` (alerts/loki of the tree). Listeners bind 127.0.0.1 and
    the ruler sends to Alertmanager on 127.0.0.1.
    """
    config: dict[str, Any] = yaml.safe_load(localize_hostnames(source))
    server = config.setdefault("server", {})
    server["http_listen_address"] = server["grpc_listen_address"] = "127.0.0.1"

    def moved(path: str) -> str:
        return _replace_prefix(path, "/loki", data_dir)

    common = config["common"]
    common["path_prefix"] = moved(common["path_prefix"])
    filesystem = common["storage"]["filesystem"]
    filesystem["chunks_directory"] = moved(filesystem["chunks_directory"])
    filesystem["rules_directory"] = str(rules_dir)
    if "compactor" in config:
        config["compactor"]["working_directory"] = moved(config["compactor"]["working_directory"])
    if "ruler" in config and "rule_path" in config["ruler"]:
        config["ruler"]["rule_path"] = moved(config["ruler"]["rule_path"])
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def render_grafana_provisioning(source: str, *, dashboards_dir: Path) -> str:
    """Return a file of backends/grafana/provisioning/ for a local Grafana: datasource URLs on 127.0.0.1 and the
    dashboards provider reading ``dashboards_dir`` (dashboards/ of the tree).

    Works on the text, so Grafana's `$$` escapes and the comments stay exactly as written.
    """
    return localize_hostnames(source).replace(_CONTAINER_DASHBOARDS_DIR, str(dashboards_dir))


def render_prometheus_config(
    source: str,
    *,
    major_version: int,
    hostname: str | None = None,
    rules_dir: Path | None = None,
    targets_dir: Path | None = None,
    drop_jobs: Collection[str] = (),
    evaluation_interval: str | None = None,
) -> str:
    """Return backends/prometheus/prometheus.yml adapted to a Prometheus binary and where it runs.

    - ``major_version`` < 3 drops the keys 2.x cannot parse (the ``otlp:`` block; 2.x has no OTLP receiver);
    - ``hostname`` replaces the container hostnames in targets (``"127.0.0.1"`` for native processes);
    - ``rules_dir`` / ``targets_dir`` replace the container paths /etc/obsbox/alerts and /etc/obsbox/targets;
    - ``drop_jobs`` removes scrape jobs of components that are not running;
    - ``evaluation_interval`` overrides the rule evaluation interval (e.g. ``"5s"`` in an end-to-end test).
    """
    config: dict[str, Any] = yaml.safe_load(source)
    if major_version < 3:
        for key in _PROMETHEUS_3_ONLY_KEYS:
            config.pop(key, None)
    if evaluation_interval is not None:
        config.setdefault("global", {})["evaluation_interval"] = evaluation_interval
    if rules_dir is not None:
        config["rule_files"] = [
            _replace_prefix(pattern, _CONTAINER_RULES_DIR, rules_dir) for pattern in config.get("rule_files", [])
        ]
    jobs = [job for job in config.get("scrape_configs", []) if job.get("job_name") not in set(drop_jobs)]
    if targets_dir is not None:
        for job in jobs:
            for sd in job.get("file_sd_configs", []):
                sd["files"] = [_replace_prefix(f, _CONTAINER_TARGETS_DIR, targets_dir) for f in sd["files"]]
    config["scrape_configs"] = jobs
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    return localize_hostnames(text, hostname) if hostname is not None else text


def render_alertmanager_config(
    source: str,
    env: Mapping[str, str],
    *,
    templates_dir: Path | None = None,
) -> str:
    """Return backends/alertmanager/alertmanager.yml with the notification integrations ``env`` asks for.

    >>> text = render_alertmanager_config("receivers: [{name: page}, {name: ticket}]",
    ...                                   {"OBSBOX_ALERT_WEBHOOK_URL": "http://127.0.0.1:9000/hook"})
    >>> yaml.safe_load(text)["receivers"][0]["webhook_configs"][0]["url"]
    'http://127.0.0.1:9000/hook'

    Alertmanager does not expand environment variables in its config, hence this step. With no OBSBOX_ALERT_*
    variable set the receivers stay silent (the shipped default). ``templates_dir`` replaces the container
    path /etc/alertmanager/templates for a native Alertmanager. Raises ValueError, naming the variable, for an
    incomplete or malformed setting.
    """
    config: dict[str, Any] = yaml.safe_load(source)
    integrations = _integrations_from_env(env)
    wanted = _receivers_from_env(env)
    receivers = config.get("receivers", [])
    known = {receiver["name"] for receiver in receivers}
    missing = wanted - known
    if missing:
        raise ValueError(
            f"OBSBOX_ALERT_RECEIVERS names {', '.join(sorted(missing))}, which the Alertmanager config does not "
            f"define (it has {', '.join(sorted(known))})"
        )
    for receiver in receivers:
        if receiver["name"] in wanted:
            for key, entries in integrations.items():
                receiver[key] = copy.deepcopy(entries)
    if templates_dir is not None:
        config["templates"] = [
            _replace_prefix(t, _CONTAINER_TEMPLATES_DIR, templates_dir) for t in config.get("templates", [])
        ]
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _replace_prefix(path: str, container_dir: str, host_dir: Path) -> str:
    if path == container_dir or path.startswith(container_dir + "/"):
        return str(host_dir) + path[len(container_dir) :]
    return path


def _receivers_from_env(env: Mapping[str, str]) -> set[str]:
    names = {name.strip() for name in env.get("OBSBOX_ALERT_RECEIVERS", "page,ticket").split(",")}
    names.discard("")
    if not names:
        raise ValueError("OBSBOX_ALERT_RECEIVERS is empty; use 'page,ticket', 'page' or 'ticket'")
    return names


def _url(env: Mapping[str, str], name: str) -> str:
    value = env[name].strip()
    if not re.match(r"https?://[^\s/]+", value):
        raise ValueError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value


def _integrations_from_env(env: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    title = '{{ template "obsbox.title" . }}'
    text = '{{ template "obsbox.text" . }}'
    integrations: dict[str, list[dict[str, Any]]] = {}
    if env.get("OBSBOX_ALERT_WEBHOOK_URL"):
        integrations["webhook_configs"] = [{"url": _url(env, "OBSBOX_ALERT_WEBHOOK_URL"), "send_resolved": True}]
    if env.get("OBSBOX_ALERT_SLACK_WEBHOOK_URL"):
        slack: dict[str, Any] = {
            "api_url": _url(env, "OBSBOX_ALERT_SLACK_WEBHOOK_URL"),
            "send_resolved": True,
            "title": title,
            "text": text,
        }
        if env.get("OBSBOX_ALERT_SLACK_CHANNEL"):
            slack["channel"] = env["OBSBOX_ALERT_SLACK_CHANNEL"].strip()
        integrations["slack_configs"] = [slack]
    if env.get("OBSBOX_ALERT_EMAIL_TO"):
        needed = ("OBSBOX_ALERT_EMAIL_FROM", "OBSBOX_ALERT_SMTP_SMARTHOST")
        absent = [name for name in needed if not env.get(name)]
        if absent:
            raise ValueError(f"OBSBOX_ALERT_EMAIL_TO is set but {' and '.join(absent)} is not")
        smarthost = env["OBSBOX_ALERT_SMTP_SMARTHOST"].strip()
        if not re.fullmatch(r"[^\s:]+:\d+", smarthost):
            raise ValueError(f"OBSBOX_ALERT_SMTP_SMARTHOST must be host:port, got {smarthost!r}")
        require_tls = env.get("OBSBOX_ALERT_SMTP_REQUIRE_TLS", "true").strip().lower()
        if require_tls not in ("true", "false"):
            raise ValueError(f"OBSBOX_ALERT_SMTP_REQUIRE_TLS must be true or false, got {require_tls!r}")
        email: dict[str, Any] = {
            "to": env["OBSBOX_ALERT_EMAIL_TO"].strip(),
            "from": env["OBSBOX_ALERT_EMAIL_FROM"].strip(),
            "smarthost": smarthost,
            "require_tls": require_tls == "true",
            "send_resolved": True,
            "headers": {"Subject": title},
            "html": '{{ template "obsbox.email.html" . }}',
            "text": text,
        }
        if env.get("OBSBOX_ALERT_SMTP_USERNAME"):
            email["auth_username"] = env["OBSBOX_ALERT_SMTP_USERNAME"]
        if env.get("OBSBOX_ALERT_SMTP_PASSWORD"):
            email["auth_password"] = env["OBSBOX_ALERT_SMTP_PASSWORD"]
        integrations["email_configs"] = [email]
    return integrations
