"""Render the stack tree's configs for a runtime: native processes, another Prometheus major, notifications.

The files in the tree are written for the containers of stack.yml (hostnames such as ``prometheus``, paths such
as ``/etc/obsbox/alerts``, Prometheus 3). These functions turn them into what a given runtime can load:

>>> from obsbox.stack.tree import stack_root
>>> source = (stack_root() / "collector/config.yaml").read_text()
>>> native = render_collector_config(source)
>>> "jaeger:4317" in native, "127.0.0.1:14317" in native
(False, True)

Every function takes the file's text and returns new text; nothing here touches the disk. Prometheus' config,
which needs the ports and the binary's version, is rendered by obsbox.stack.native_config.render_prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
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
    "render_pyroscope_config",
]

#: The compose service names the configs use to reach each other.
CONTAINER_HOSTNAMES = ("collector", "prometheus", "alertmanager", "loki", "pyroscope", "jaeger", "grafana")

#: Where Jaeger listens when the stack runs as local processes. In containers Jaeger and the collector both use
#: 4317/4318 (OTLP), 13133 (health) and 8888 (self-metrics); on one host the collector keeps them and Jaeger moves.
NATIVE_JAEGER_PORTS: Mapping[int, int] = {4317: 14317, 4318: 14318, 13133: 13134, 8888: 8889}

#: Pyroscope's gRPC port when it runs as a local process: its default, 9095, is Loki's gRPC port too.
NATIVE_PYROSCOPE_GRPC_PORT = 9097

#: Environment variables read by render_alertmanager_config(), with what each one does (docs/stack.md).
NOTIFICATION_VARIABLES: Mapping[str, str] = {
    "OBSBOX_ALERT_RECEIVERS": "receivers the unprefixed settings apply to: every notifying receiver (default) or a "
                              "comma-separated list of team, oncall, incident, escalation",
    "OBSBOX_ALERT_WEBHOOK_URL": "POST every notification as JSON (Alertmanager's webhook format) to this URL",
    "OBSBOX_ALERT_SLACK_WEBHOOK_URL": "post to this Slack incoming-webhook URL",
    "OBSBOX_ALERT_SLACK_CHANNEL": "Slack channel (optional; the webhook's own channel otherwise)",
    "OBSBOX_ALERT_EMAIL_TO": "send e-mail to this address (needs the next two)",
    "OBSBOX_ALERT_EMAIL_FROM": "sender address of the e-mails",
    "OBSBOX_ALERT_SMTP_SMARTHOST": "SMTP server as host:port",
    "OBSBOX_ALERT_SMTP_USERNAME": "SMTP login (optional)",
    "OBSBOX_ALERT_SMTP_PASSWORD": "SMTP password (optional)",
    "OBSBOX_ALERT_SMTP_REQUIRE_TLS": "'true' (default) or 'false'",
    "OBSBOX_ALERT_WECHAT_CORP_ID": "WeChat Work (WeCom) corp id (needs the API secret, the agent id and a target)",
    "OBSBOX_ALERT_WECHAT_API_SECRET": "the WeCom application's secret",
    "OBSBOX_ALERT_WECHAT_AGENT_ID": "the WeCom application's agent id",
    "OBSBOX_ALERT_WECHAT_TO_USER": "WeCom users to notify ('@all', or ids joined by '|')",
    "OBSBOX_ALERT_WECHAT_TO_PARTY": "WeCom departments to notify (ids joined by '|')",
    "OBSBOX_ALERT_WECHAT_TO_TAG": "WeCom tags to notify (ids joined by '|')",
    "OBSBOX_ALERT_WECHAT_API_URL": "WeCom API base URL (default Alertmanager's, https://qyapi.weixin.qq.com/cgi-bin/)",
    "OBSBOX_ALERT_<RECEIVER>_<SETTING>": "any setting above for one receiver only, e.g. "
                                         "OBSBOX_ALERT_TEAM_SLACK_WEBHOOK_URL; wins over the unprefixed one",
    "OBSBOX_ALERT_<SECRET>_FILE": "read a secret (WEBHOOK_URL, SLACK_WEBHOOK_URL, SMTP_PASSWORD, WECHAT_API_SECRET; "
                                  "also per receiver) from a file only its owner can read (mode 0600 or 0400)",
    "OBSBOX_ALERT_<GRADE>_GROUP_WAIT": "how long the first notification of a new group waits, for GRADE critical "
                                       "(oncall, incident, escalation) or warning (team)",
    "OBSBOX_ALERT_<GRADE>_GROUP_INTERVAL": "how long before a changed group is notified again",
    "OBSBOX_ALERT_<GRADE>_REPEAT_INTERVAL": "how long before an unchanged, still firing group is notified again",
    "OBSBOX_ALERT_MAINTENANCE": "recurring quiet periods, ';'-separated, e.g. 'sat,sun 02:00-04:00 Europe/Berlin; "
                                "daily 12:00-12:15'",
    "OBSBOX_ALERT_MAINTENANCE_RECEIVERS": "whose routes the quiet periods mute: every notifying receiver (default) "
                                          "or a comma-separated list",
}

#: Settings that may be given per receiver, and those of them that are secrets (readable from a 0600 file).
_RECEIVER_SETTINGS = ("WEBHOOK_URL", "SLACK_WEBHOOK_URL", "SLACK_CHANNEL", "EMAIL_TO", "EMAIL_FROM", "SMTP_SMARTHOST",
                      "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_REQUIRE_TLS", "WECHAT_CORP_ID", "WECHAT_API_SECRET",
                      "WECHAT_AGENT_ID", "WECHAT_TO_USER", "WECHAT_TO_PARTY", "WECHAT_TO_TAG", "WECHAT_API_URL")
_SECRET_SETTINGS = ("WEBHOOK_URL", "SLACK_WEBHOOK_URL", "SMTP_PASSWORD", "WECHAT_API_SECRET")
_GRADES = {"CRITICAL": 'severity="critical"', "WARNING": 'severity="warning"'}
_INTERVALS = ("GROUP_WAIT", "GROUP_INTERVAL", "REPEAT_INTERVAL")
#: The receiver that notifies nobody: it never gets an integration.
SILENT_RECEIVER = "blackhole"
#: The name of the time interval OBSBOX_ALERT_MAINTENANCE renders.
MAINTENANCE_INTERVAL = "maintenance"
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_PROM_DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")

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


def render_pyroscope_config(source: str, *, data_dir: Path) -> str:
    """Return backends/pyroscope/config.yaml for a local Pyroscope process.

    ``data_dir`` replaces the container's /data (the volume of the image) in every storage path; the HTTP and gRPC
    listeners and memberlist bind 127.0.0.1, and gRPC moves to NATIVE_PYROSCOPE_GRPC_PORT (Loki keeps 9095).
    """
    config: dict[str, Any] = yaml.safe_load(source)
    server = config.setdefault("server", {})
    server["http_listen_address"] = server["grpc_listen_address"] = "127.0.0.1"
    server["grpc_listen_port"] = NATIVE_PYROSCOPE_GRPC_PORT
    config["memberlist"] = {**config.get("memberlist", {}), "bind_addr": ["127.0.0.1"],
                            "advertise_addr": "127.0.0.1"}

    def moved(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: moved(value) for key, value in node.items()}
        return _replace_prefix(node, "/data", data_dir) if isinstance(node, str) else node

    for section in ("pyroscopedb", "storage", "metastore"):
        if section in config:
            config[section] = moved(config[section])
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def render_grafana_provisioning(source: str, *, dashboards_dir: Path) -> str:
    """Return a file of backends/grafana/provisioning/ for a local Grafana: datasource URLs on 127.0.0.1 and the
    dashboards provider reading ``dashboards_dir`` (dashboards/ of the tree).

    Works on the text, so Grafana's `$$` escapes and the comments stay exactly as written.
    """
    return localize_hostnames(source).replace(_CONTAINER_DASHBOARDS_DIR, str(dashboards_dir))


def render_alertmanager_config(
    source: str,
    env: Mapping[str, str],
    *,
    templates_dir: Path | None = None,
) -> str:
    """Return backends/alertmanager/alertmanager.yml with the notifications ``env`` asks for.

    >>> text = render_alertmanager_config("receivers: [{name: team}, {name: oncall}]",
    ...                                   {"OBSBOX_ALERT_WEBHOOK_URL": "http://127.0.0.1:9000/hook"})
    >>> yaml.safe_load(text)["receivers"][0]["webhook_configs"][0]["url"]
    'http://127.0.0.1:9000/hook'

    Alertmanager does not expand environment variables in its config, hence this step. With no OBSBOX_ALERT_*
    variable set the receivers stay silent (the shipped default). The unprefixed settings apply to every
    notifying receiver (all but ``blackhole``) or those OBSBOX_ALERT_RECEIVERS lists; ``OBSBOX_ALERT_<RECEIVER>_*``
    settings apply to one receiver and win. Secrets may come from ``*_FILE`` variables naming files only their
    owner can read. ``OBSBOX_ALERT_<GRADE>_*`` set the group/repeat intervals of the critical and warning routes,
    OBSBOX_ALERT_MAINTENANCE renders recurring quiet periods that mute the notifying routes. ``templates_dir``
    replaces the container path /etc/alertmanager/templates for a native Alertmanager. Raises ValueError, naming
    the variable, for an unknown, incomplete or malformed setting.
    """
    config: dict[str, Any] = yaml.safe_load(source)
    receivers = config.get("receivers", [])
    notifying = [r["name"] for r in receivers if r["name"] != SILENT_RECEIVER]
    _check_variable_names(env, notifying)
    shared = _receivers_from_env(env, "OBSBOX_ALERT_RECEIVERS", notifying)
    for receiver in receivers:
        if receiver["name"] in notifying:
            integrations = _integrations_from_env(env, receiver["name"], shared=receiver["name"] in shared)
            for key, entries in integrations.items():
                receiver[key] = entries
    routes = list(_walk_routes(config.get("route") or {}))
    _apply_intervals(env, routes)
    windows = _maintenance_windows(env)
    if windows:
        muted = _receivers_from_env(env, "OBSBOX_ALERT_MAINTENANCE_RECEIVERS", notifying)
        config["time_intervals"] = [
            *[t for t in config.get("time_intervals") or [] if t.get("name") != MAINTENANCE_INTERVAL],
            {"name": MAINTENANCE_INTERVAL, "time_intervals": windows},
        ]
        for route in routes:
            if route.get("receiver") in muted:
                names = [n for n in route.get("mute_time_intervals") or [] if n != MAINTENANCE_INTERVAL]
                route["mute_time_intervals"] = [*names, MAINTENANCE_INTERVAL]
    if templates_dir is not None:
        config["templates"] = [
            _replace_prefix(t, _CONTAINER_TEMPLATES_DIR, templates_dir) for t in config.get("templates", [])
        ]
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _replace_prefix(path: str, container_dir: str, host_dir: Path) -> str:
    if path == container_dir or path.startswith(container_dir + "/"):
        return str(host_dir) + path[len(container_dir) :]
    return path


def _env_name(receiver: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", receiver).upper()


def _check_variable_names(env: Mapping[str, str], notifying: list[str]) -> None:
    """A misspelt OBSBOX_ALERT_* variable would silently notify nobody: refuse every name this file does not read."""
    known = {name for name in NOTIFICATION_VARIABLES if "<" not in name}
    settings = set(_RECEIVER_SETTINGS) | {f"{s}_FILE" for s in _SECRET_SETTINGS}
    known |= {f"OBSBOX_ALERT_{s}" for s in settings}
    known |= {f"OBSBOX_ALERT_{_env_name(r)}_{s}" for r in notifying for s in settings}
    known |= {f"OBSBOX_ALERT_{g}_{i}" for g in _GRADES for i in _INTERVALS}
    unknown = sorted(n for n in env if n.startswith("OBSBOX_ALERT_") and n not in known)
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)}: no such notification setting (receivers here: {', '.join(notifying)}; "
            "the settings are listed in docs/stack.md)"
        )


def _receivers_from_env(env: Mapping[str, str], variable: str, notifying: list[str]) -> set[str]:
    if variable not in env:
        return set(notifying)
    names = {name.strip() for name in env[variable].split(",")}
    names.discard("")
    if not names:
        raise ValueError(f"{variable} is empty; name receivers ({', '.join(notifying)}) or unset it")
    missing = names - set(notifying)
    if missing:
        raise ValueError(
            f"{variable} names {', '.join(sorted(missing))}, which the Alertmanager config does not define as a "
            f"notifying receiver (it has {', '.join(notifying)})"
        )
    return names


def _setting(env: Mapping[str, str], receiver: str, key: str, *, shared: bool) -> str | None:
    """A receiver's setting: OBSBOX_ALERT_<RECEIVER>_<KEY>, else (for a receiver the shared settings apply to)
    OBSBOX_ALERT_<KEY>; a secret may come from the same name + _FILE."""
    names = [f"OBSBOX_ALERT_{_env_name(receiver)}_{key}"] + ([f"OBSBOX_ALERT_{key}"] if shared else [])
    for name in names:
        value = env.get(name)
        from_file = env.get(f"{name}_FILE") if key in _SECRET_SETTINGS else None
        if value and from_file:
            raise ValueError(f"{name} and {name}_FILE are both set; keep one")
        if from_file:
            return _read_secret_file(f"{name}_FILE", from_file)
        if value and value.strip():
            return value.strip()
    return None


def _read_secret_file(variable: str, path_text: str) -> str:
    path = Path(path_text).expanduser()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ValueError(f"{variable}: cannot read {path}: {e.strerror}") from None
    if mode & 0o077:
        raise ValueError(
            f"{variable}: {path} is readable by others (mode {mode & 0o777:o}); a secret file must be private: "
            f"chmod 600 {path}"
        )
    if not text:
        raise ValueError(f"{variable}: {path} is empty")
    return text


def _url(value: str, name: str) -> str:
    if not re.match(r"https?://[^\s/]+", value):
        raise ValueError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value


def _integrations_from_env(env: Mapping[str, str], receiver: str, *, shared: bool) -> dict[str, list[dict[str, Any]]]:
    def get(key: str) -> str | None:
        return _setting(env, receiver, key, shared=shared)

    def name(key: str) -> str:
        own = f"OBSBOX_ALERT_{_env_name(receiver)}_{key}"
        return own if own in env or f"{own}_FILE" in env or not shared else f"OBSBOX_ALERT_{key}"

    title = '{{ template "obsbox.title" . }}'
    text = '{{ template "obsbox.text" . }}'
    integrations: dict[str, list[dict[str, Any]]] = {}
    webhook = get("WEBHOOK_URL")
    if webhook:
        integrations["webhook_configs"] = [{"url": _url(webhook, name("WEBHOOK_URL")), "send_resolved": True}]
    slack_url = get("SLACK_WEBHOOK_URL")
    if slack_url:
        slack: dict[str, Any] = {
            "api_url": _url(slack_url, name("SLACK_WEBHOOK_URL")),
            "send_resolved": True,
            "title": title,
            "title_link": '{{ template "obsbox.dashboard_url" . }}',
            "text": text,
        }
        channel = get("SLACK_CHANNEL")
        if channel:
            slack["channel"] = channel
        integrations["slack_configs"] = [slack]
    email_to = get("EMAIL_TO")
    if email_to:
        absent = [name(k) for k in ("EMAIL_FROM", "SMTP_SMARTHOST") if not get(k)]
        if absent:
            raise ValueError(f"{name('EMAIL_TO')} is set but {' and '.join(absent)} is not")
        smarthost = str(get("SMTP_SMARTHOST"))
        if not re.fullmatch(r"[^\s:]+:\d+", smarthost):
            raise ValueError(f"{name('SMTP_SMARTHOST')} must be host:port, got {smarthost!r}")
        require_tls = (get("SMTP_REQUIRE_TLS") or "true").lower()
        if require_tls not in ("true", "false"):
            raise ValueError(f"{name('SMTP_REQUIRE_TLS')} must be true or false, got {require_tls!r}")
        email: dict[str, Any] = {
            "to": email_to,
            "from": str(get("EMAIL_FROM")),
            "smarthost": smarthost,
            "require_tls": require_tls == "true",
            "send_resolved": True,
            "headers": {"Subject": title},
            "html": '{{ template "obsbox.email.html" . }}',
            "text": text,
        }
        username, password = get("SMTP_USERNAME"), get("SMTP_PASSWORD")
        if username:
            email["auth_username"] = username
        if password:
            email["auth_password"] = password
        integrations["email_configs"] = [email]
    corp_id = get("WECHAT_CORP_ID")
    if corp_id:
        absent = [name(k) for k in ("WECHAT_API_SECRET", "WECHAT_AGENT_ID") if not get(k)]
        if absent:
            raise ValueError(f"{name('WECHAT_CORP_ID')} is set but {' and '.join(absent)} is not")
        targets = {k: get(f"WECHAT_{k.upper()}") for k in ("to_user", "to_party", "to_tag")}
        if not any(targets.values()):
            raise ValueError(f"{name('WECHAT_CORP_ID')} is set but none of {name('WECHAT_TO_USER')}, "
                             f"{name('WECHAT_TO_PARTY')} or {name('WECHAT_TO_TAG')} says who hears it")
        wechat: dict[str, Any] = {
            "corp_id": corp_id,
            "api_secret": str(get("WECHAT_API_SECRET")),
            "agent_id": str(get("WECHAT_AGENT_ID")),
            **{k: v for k, v in targets.items() if v},
            "message_type": "text",
            "message": '{{ template "obsbox.message" . }}',
            "send_resolved": True,
        }
        api_url = get("WECHAT_API_URL")
        if api_url:
            wechat["api_url"] = _url(api_url, name("WECHAT_API_URL")).rstrip("/") + "/"
        integrations["wechat_configs"] = [wechat]
    return integrations


def _walk_routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes") or []:
        yield from _walk_routes(child)


def _apply_intervals(env: Mapping[str, str], routes: list[dict[str, Any]]) -> None:
    for grade, matcher in _GRADES.items():
        for interval in _INTERVALS:
            variable = f"OBSBOX_ALERT_{grade}_{interval}"
            value = env.get(variable, "").strip()
            if not value:
                continue
            if not _PROM_DURATION.fullmatch(value) or not re.search(r"[1-9]", value):
                raise ValueError(f"{variable} must be a duration such as 30s, 5m or 4h, got {value!r}")
            for route in routes:
                matchers = route.get("matchers") or []
                escalation = grade == "CRITICAL" and 'alertname="CriticalAlertEscalated"' in matchers
                if matcher in matchers or escalation:
                    route[interval.lower()] = value


def _maintenance_windows(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """OBSBOX_ALERT_MAINTENANCE -> Alertmanager time intervals.

    Each ';'-separated window is ``[DAYS] [HH:MM-HH:MM] [LOCATION]``: DAYS ``daily`` (alone: all day) or weekday names
    and ranges joined by ',' (``mon-fri``, ``saturday,sunday``); the times in 24-hour form, ``24:00`` allowed as an
    end; LOCATION an IANA zone such as ``Europe/Berlin`` (default UTC).
    """
    text = env.get("OBSBOX_ALERT_MAINTENANCE", "").strip()
    windows = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        window: dict[str, Any] = {}
        daily = False
        for word in part.split():
            lowered = word.lower()
            times = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", word)
            if times:
                start, end = (int(times[1]), int(times[2])), (int(times[3]), int(times[4]))
                if start[0] > 23 or end > (24, 0) or start[1] > 59 or end[1] > 59 or start >= end:
                    raise ValueError(f"OBSBOX_ALERT_MAINTENANCE: {word!r} is not a time range within one day "
                                     "(HH:MM-HH:MM, start before end; a window over midnight is two windows)")
                window["times"] = [{"start_time": f"{start[0]:02d}:{start[1]:02d}",
                                    "end_time": f"{end[0]:02d}:{end[1]:02d}"}]
            elif lowered == "daily":
                daily = True
            elif "/" in word or word in ("UTC", "Local"):
                window["location"] = word
            else:
                window["weekdays"] = [_weekday_range(w, part) for w in lowered.split(",")]
        if set(window) <= {"location"} and not daily:
            raise ValueError(f"OBSBOX_ALERT_MAINTENANCE: {part!r} names no days and no times")
        windows.append(window)
    return windows


def _weekday_range(text: str, window: str) -> str:
    def day(name: str) -> str:
        found = [d for d in _WEEKDAYS if len(name) >= 3 and d.startswith(name)]
        if len(found) != 1:
            raise ValueError(f"OBSBOX_ALERT_MAINTENANCE: {name!r} in {window!r} is not a weekday (mon, tue, ..., "
                             "sunday, or a range such as mon-fri)")
        return found[0]

    parts = re.split(r"[-:]", text)
    if len(parts) == 1:
        return day(parts[0])
    if len(parts) != 2:
        raise ValueError(f"OBSBOX_ALERT_MAINTENANCE: {text!r} is not a weekday range such as mon-fri")
    return f"{day(parts[0])}:{day(parts[1])}"
