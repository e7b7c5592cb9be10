"""stack.yml: valid Compose, safe by default (127.0.0.1 ports, pinned images, no default password), bounded,
health-gated, and every file it mounts exists in the tree that ships in the wheel."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import tomllib
import yaml

from obsbox.samples import SERVICES
from obsbox.samples._chaos import ANY_HOST_ENV
from obsbox.stack.tree import pinned_images, stack_root

ROOT = stack_root()
CORE = ("collector", "prometheus", "alertmanager", "loki", "pyroscope", "jaeger", "grafana")
SAMPLES = tuple(SERVICES)
# Host ports the issue asks for, all on 127.0.0.1.
CORE_PORTS = {3000, 9090, 9093, 3100, 4040, 16686, 4317, 4318, 13133}
# Which tool in each image can run a health check (tests/tree/test_facts.py pins where each fact comes from).
HEALTH_TOOL = {
    "prometheus": "wget",
    "alertmanager": "wget",
    "jaeger": "wget",
    "grafana": "curl",
    "loki": "/usr/bin/loki",
    "pyroscope": "/usr/bin/profilecli",
    **{name: "python" for name in SAMPLES},
}
NO_HEALTH_TOOL = {"collector"}  # FROM scratch: nothing to exec
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "stack.yml").read_text())
    return data


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message}, as `docker compose` resolves them."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in env and (env[name] != "" or op not in (":-", ":?")):
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise LookupError(f"required variable {name} is missing a value: {arg}")
        return ""

    return _VAR.sub(one, value)


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def test_stack_yml_is_valid_against_the_compose_specification_schema() -> None:
    schema = json.loads((Path(__file__).parent / "compose_spec" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_check_catches_a_broken_service() -> None:
    """The validation above is not vacuous: an unknown key or a wrong type is rejected."""
    schema = json.loads((Path(__file__).parent / "compose_spec" / "compose-spec.json").read_text())
    broken = compose()
    broken["services"]["grafana"]["helthcheck"] = {}
    broken["services"]["prometheus"]["depends_on"] = {"alertmanager": {"condition": "healthy"}}
    messages = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(broken)]
    assert len(messages) == 2, messages


def test_project_name_and_services() -> None:
    data = compose()
    assert data["name"] == "obsbox"
    assert set(data["services"]) == set(CORE) | set(SAMPLES)


def test_every_image_is_pinned_in_dot_env_and_never_latest() -> None:
    pins = pinned_images()
    for name, service in services().items():
        image = service["image"]
        if name in SAMPLES:
            assert service["build"]["dockerfile"] == "backends/samples/Dockerfile"
            continue
        var = _VAR.fullmatch(image)
        assert var is not None, f"{name}: image {image!r} must come from .env as ${{VAR}}"
        resolved = pins[var["name"]]
        repo, _, tag = resolved.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {resolved} is not pinned"
        assert "/" in repo
    assert not [v for v in pins.values() if v.endswith(":latest")]
    build_base = services()["gateway"]["build"]["args"]["PYTHON_IMAGE"]
    assert build_base == "${PYTHON_IMAGE}" and ":" in pins["PYTHON_IMAGE"]


def test_host_ports_bind_127_0_0_1_only() -> None:
    published: dict[str, set[int]] = {}
    for name, service in services().items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port!r}"
            host_ip, host_port, container_port = port.split(":")
            published.setdefault(name, set()).add(int(host_port))
            assert host_port == container_port
    core = set().union(*(published.get(name, set()) for name in CORE))
    assert core == CORE_PORTS
    assert published["grafana"] == {3000} and published["jaeger"] == {16686}
    assert published["collector"] == {4317, 4318, 13133}
    assert {published[name].pop() for name in SAMPLES} == {s.default_port for s in SERVICES.values()}


def _wheel_force_include() -> dict[str, str]:
    """The [tool.hatch.build.targets.wheel.force-include] table of pyproject.toml (tomllib needs Python 3.11)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[tool.hatch.build.targets.wheel.force-include]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^"([^"]+)"\s*=\s*"([^"]+)"', section, re.M))


def _bind_sources(service: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    env = {**pinned_images(), "OBSBOX_GRAFANA_PASSWORD": "x"}
    for volume in service.get("volumes", []):
        source, target = interpolate(volume, env).split(":")[:2]
        pairs.append((source, target))
    return pairs


def test_every_bind_mount_exists_in_the_tree_and_ships_in_the_wheel() -> None:
    shipped_roots = {Path(src).parts[0] for src in _wheel_force_include()}
    assert {"stack.yml", ".env", "collector", "backends", "dashboards", "alerts"} <= shipped_roots
    declared_volumes = set(compose()["volumes"])
    checked = 0
    for name, service in services().items():
        for source, target in _bind_sources(service):
            assert target.startswith("/"), f"{name}: {target}"
            if not source.startswith("."):
                assert source in declared_volumes, f"{name}: volume {source} not declared"
                continue
            path = (ROOT / source).resolve()
            assert path.exists(), f"{name}: {source} does not exist"
            assert Path(source).parts[0] in shipped_roots, f"{name}: {source} is not shipped in the wheel"
            checked += 1
    build = services()["gateway"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    assert checked == 14  # collector 1, prometheus 3, alertmanager 2, loki 2, pyroscope 1, jaeger 1, grafana 4


def test_named_volumes_keep_the_data_of_the_stateful_components() -> None:
    expected = {
        "prometheus": "/prometheus",
        "alertmanager": "/alertmanager",
        "loki": "/loki",
        "pyroscope": "/data",
        "grafana": "/var/lib/grafana",
    }
    for name, target in expected.items():
        assert (f"{name}-data", target) in _bind_sources(services()[name])
    assert set(compose()["volumes"]) == {f"{name}-data" for name in expected}


def test_storage_paths_match_the_named_volumes() -> None:
    prometheus = services()["prometheus"]["command"]
    assert "--storage.tsdb.path=/prometheus" in prometheus
    assert "--storage.path=/alertmanager" in services()["alertmanager"]["command"]
    loki = yaml.safe_load((ROOT / "backends/loki/config.yaml").read_text())
    assert loki["common"]["path_prefix"] == "/loki"
    pyroscope = yaml.safe_load((ROOT / "backends/pyroscope/config.yaml").read_text())
    paths = [pyroscope["pyroscopedb"]["data_path"], pyroscope["storage"]["filesystem"]["dir"],
             pyroscope["metastore"]["data_dir"], pyroscope["metastore"]["raft"]["dir"]]
    assert all(path.startswith("/data/") for path in paths), paths


def test_retention_is_bounded() -> None:
    command = services()["prometheus"]["command"]
    env: dict[str, str] = {}
    flags = dict(interpolate(arg, env).split("=", 1) for arg in command if "=" in arg)
    assert re.fullmatch(r"\d+[dhwy]", flags["--storage.tsdb.retention.time"])
    assert re.fullmatch(r"\d+(GB|MB|TB)", flags["--storage.tsdb.retention.size"])
    assert any(a.startswith("--data.retention=") for a in services()["alertmanager"]["command"])


def test_memory_limits_and_restart_policy_everywhere() -> None:
    for name, service in services().items():
        limit = service["deploy"]["resources"]["limits"]["memory"]
        assert re.fullmatch(r"\d+[MG]", limit), f"{name}: {limit}"
        assert service["restart"] == "unless-stopped", name
        assert service["logging"]["options"]["max-size"], name


def test_health_checks_where_the_image_has_a_tool() -> None:
    for name, service in services().items():
        if name in NO_HEALTH_TOOL:
            assert "healthcheck" not in service, f"{name}: its image cannot run a health check"
            continue
        check = service["healthcheck"]
        assert check["test"][0] == "CMD", name
        assert check["test"][1] == HEALTH_TOOL[name], name
        assert any("127.0.0.1" in part for part in check["test"]), f"{name}: probe the container itself"
        assert int(check["retries"]) >= 3


def test_health_probes_hit_each_components_ready_endpoint() -> None:
    urls = {name: next(p for p in s["healthcheck"]["test"] if "http" in p) for name, s in services().items()
            if "healthcheck" in s}
    assert urls["prometheus"].endswith("127.0.0.1:9090/-/ready")
    assert urls["alertmanager"].endswith("127.0.0.1:9093/-/ready")
    assert urls["jaeger"].endswith("127.0.0.1:13133/status")
    assert urls["grafana"].endswith("127.0.0.1:3000/api/health")
    assert urls["loki"] == "-health.url=http://127.0.0.1:3100/ready"
    assert urls["pyroscope"] == "--url=http://127.0.0.1:4040"  # profilecli ready GETs <url>/ready


def _start_order() -> list[str]:
    graph = {name: set(service.get("depends_on", {})) for name, service in services().items()}
    order: list[str] = []
    while graph:
        ready = sorted(name for name, deps in graph.items() if deps <= set(order))
        assert ready, f"dependency cycle among {sorted(graph)}"
        order.extend(ready)
        for name in ready:
            del graph[name]
    return order


def test_grafana_starts_last_and_waits_for_health() -> None:
    core_order = [name for name in _start_order() if name in CORE]
    assert core_order[-1] == "grafana"
    depends = services()["grafana"]["depends_on"]
    assert set(depends) == set(CORE) - {"grafana"}
    for name, condition in depends.items():
        expected = "service_started" if name in NO_HEALTH_TOOL else "service_healthy"
        assert condition["condition"] == expected, name


def test_service_healthy_only_on_services_with_a_health_check() -> None:
    for name, service in services().items():
        for dep, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services()[dep], f"{name} waits for {dep}, which has no health check"


def test_default_commands_are_repeated_when_overridden() -> None:
    """Overriding `command:` replaces the image's default, so its config/storage flags must be repeated."""
    assert services()["prometheus"]["command"][:2] == [
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
    ]
    assert services()["alertmanager"]["command"][:2] == [
        "--config.file=/etc/alertmanager/alertmanager.yml",
        "--storage.path=/alertmanager",
    ]
    assert services()["loki"]["command"] == ["-config.file=/etc/loki/config.yaml"]
    assert services()["jaeger"]["command"] == ["--config=/etc/jaeger/config.yml"]
    assert services()["pyroscope"]["command"] == ["-config.file=/etc/pyroscope/config.yaml"]
    assert "command" not in services()["collector"]  # the image reads /etc/otelcol-contrib/config.yaml
    mounted = {target: source for source, target in _bind_sources(services()["collector"])}
    assert mounted["/etc/otelcol-contrib/config.yaml"] == "./collector/config.yaml"


def test_config_mounts_point_at_the_right_files() -> None:
    def mounts(name: str) -> dict[str, str]:
        return {target: source for source, target in _bind_sources(services()[name])}

    assert mounts("prometheus")["/etc/prometheus/prometheus.yml"] == "./backends/prometheus/prometheus.yml"
    assert mounts("prometheus")["/etc/obsbox/alerts"] == "./alerts"
    assert mounts("prometheus")["/etc/obsbox/targets"] == "./backends/prometheus/targets"
    assert mounts("alertmanager")["/etc/alertmanager/alertmanager.yml"] == "./backends/alertmanager/alertmanager.yml"
    assert mounts("loki")["/etc/loki/config.yaml"] == "./backends/loki/config.yaml"
    assert mounts("loki")["/etc/loki/rules"] == "./alerts/loki"
    assert mounts("jaeger")["/etc/jaeger/config.yml"] == "./backends/jaeger/config.yaml"
    assert mounts("pyroscope")["/etc/pyroscope/config.yaml"] == "./backends/pyroscope/config.yaml"
    grafana = mounts("grafana")
    assert grafana["/etc/grafana/dashboards"] == "./dashboards"
    for kind in ("datasources", "dashboards", "alerting"):
        assert grafana[f"/etc/grafana/provisioning/{kind}"] == f"./backends/grafana/provisioning/{kind}"


def test_grafana_password_is_required_from_the_environment_never_a_default() -> None:
    environment = services()["grafana"]["environment"]
    raw = environment["GF_SECURITY_ADMIN_PASSWORD"]
    assert _VAR.fullmatch(raw)["op"] == ":?"  # type: ignore[index]
    with pytest.raises(LookupError, match="OBSBOX_GRAFANA_PASSWORD.*obsbox up"):
        interpolate(raw, {})
    assert interpolate(raw, {"OBSBOX_GRAFANA_PASSWORD": "s3cret"}) == "s3cret"
    assert interpolate(environment["GF_AUTH_ANONYMOUS_ENABLED"], {}) == "false"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert environment["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert "OBSBOX_GRAFANA_PASSWORD" not in (ROOT / ".env").read_text()


def test_home_dashboard_is_the_services_overview() -> None:
    path = services()["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert path == "/etc/grafana/dashboards/obsbox/services-overview.json"
    local = ROOT / "dashboards" / Path(path).relative_to("/etc/grafana/dashboards")
    assert local.is_file(), f"home dashboard {local} is missing"
    assert json.loads(local.read_text())["title"]


def test_samples_profile_runs_the_four_services_from_the_package() -> None:
    for name, info in SERVICES.items():
        service = services()[name]
        assert service["profiles"] == ["samples"]
        assert service["command"] == [
            "python", "-m", "obsbox.samples", "serve", name, "--host", "0.0.0.0", "--port", str(info.default_port),
        ]
        assert service["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
        assert service["ports"] == [f"127.0.0.1:{info.default_port}:{info.default_port}"]
        # `obsbox chaos` reaches the admin endpoint through Docker's port proxy, which is not loopback inside the
        # container; the opt-in is safe because the port is published on 127.0.0.1 only.
        assert service["environment"][ANY_HOST_ENV] == "1"
    urls = {**services()["gateway"]["environment"], **services()["orders"]["environment"]}
    for downstream in ("orders", "payments", "inventory"):
        port = SERVICES[downstream].default_port
        assert urls[SERVICES[downstream].url_env] == f"http://{downstream}:{port}"


def test_samples_dockerfile_installs_obsbox_with_the_samples_extra() -> None:
    dockerfile = (ROOT / "backends/samples/Dockerfile").read_text()
    assert 'pip install "/src[samples]"' in dockerfile
    assert "ARG PYTHON_IMAGE" in dockerfile and "FROM ${PYTHON_IMAGE}" in dockerfile
    assert "USER obsbox" in dockerfile
    samples_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["samples"]
    assert {"fastapi", "flask", "uvicorn", "sqlalchemy", "redis"} <= {re.split(r"[\[<>=~!; ]", r)[0] for r in samples_extra}
    ignored = (ROOT / "backends/samples/Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
    assert "README.md" not in ignored and "pyproject.toml" not in ignored


def test_interpolation_helper_follows_compose_rules() -> None:
    assert interpolate("${A:-x}", {}) == "x"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("${A}", {"A": "1"}) == "1"
    with pytest.raises(LookupError):
        interpolate("${A:?no}", {"A": ""})


def test_every_variable_of_stack_yml_is_pinned_or_documented() -> None:
    docs = (ROOT / "docs/stack.md").read_text()
    pins = pinned_images()
    for name in {m["name"] for m in _VAR.finditer((ROOT / "stack.yml").read_text())}:
        assert name in pins or f"`{name}`" in docs, f"${{{name}}} is neither in .env nor in docs/stack.md"


def _tree_module_at(package_dir: Path) -> Any:
    """Load obsbox/stack/tree.py as if it lived in `package_dir` (an installed obsbox package)."""
    import importlib.util

    (package_dir / "stack").mkdir(parents=True)
    target = package_dir / "stack" / "tree.py"
    target.write_text((ROOT / "obsbox/stack/tree.py").read_text())
    spec = importlib.util.spec_from_file_location("obsbox_tree_copy", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stack_root_is_the_checkout_in_a_source_tree() -> None:
    assert (ROOT / "pyproject.toml").is_file() and (ROOT / "stack.yml").is_file()
    assert Path(__file__).resolve().parents[2] == ROOT


def test_stack_root_is_the_shipped_copy_in_an_installed_wheel(tmp_path: Path) -> None:
    package = tmp_path / "site-packages" / "obsbox"
    (package / "_stack").mkdir(parents=True)
    (package / "_stack" / "stack.yml").write_text("name: obsbox\n")
    (package / "_stack" / ".env").write_text("# pins\nPROMETHEUS_IMAGE=prom/prometheus:v3.14.0\n")
    tree = _tree_module_at(package)
    assert tree.stack_root() == package / "_stack"
    assert tree.pinned_images() == {"PROMETHEUS_IMAGE": "prom/prometheus:v3.14.0"}


def test_stack_root_says_what_is_missing(tmp_path: Path) -> None:
    tree = _tree_module_at(tmp_path / "lib" / "obsbox")
    with pytest.raises(FileNotFoundError, match="no stack tree found"):
        tree.stack_root()


def test_usage_examples_in_the_stack_modules_run() -> None:
    import doctest

    import obsbox.stack.render
    import obsbox.stack.tree

    for module in (obsbox.stack.tree, obsbox.stack.render):
        failed, attempted = doctest.testmod(module)
        assert attempted > 0 and failed == 0, module.__name__
