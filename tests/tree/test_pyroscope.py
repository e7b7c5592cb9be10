"""backends/pyroscope/config.yaml and the pyroscope service of stack.yml: a single-binary Pyroscope that keeps its
profiles in the named volume, does not profile itself, and answers the box's health probe; and why the box sends
profiles straight to it rather than through the Collector.

Pyroscope is AGPL: it is neither built nor run here. Every fact the box relies on is written down below with the
file of grafana/pyroscope it was read in, and the tree is checked against it (as tests/tree/test_facts.py does for
Loki). Bumping PYROSCOPE_IMAGE in .env means reading these files again at the new tag.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from obsbox.stack.components import COMPONENTS
from obsbox.stack.tree import pinned_images, stack_root
from tests.tree.test_collector_build import _built as _built_collector

ROOT = stack_root()
PINNED = "grafana/pyroscope:2.0.2"  # the image these facts were read for (tags have no "v")

# cmd/pyroscope/pyroscope.yaml (grafana/pyroscope, the v2-era reference: every parameter with its default,
# commented out). Pyroscope decodes its YAML strictly (dskit), so a key outside this list stops it at start-up.
# The paths the box sets, with their upstream defaults:
REFERENCE_KEYS = {
    "server.http_listen_address": "",             # all interfaces
    "server.http_listen_port": 4040,
    "server.grpc_listen_address": "",
    "server.grpc_listen_port": 9095,
    "server.log_level": "info",                   # debug, info, warn, error
    "pyroscopedb.data_path": "./data",
    "storage.backend": "filesystem",              # s3, gcs, azure, swift, filesystem, cos
    "storage.filesystem.dir": "./data/v2/shared",
    "metastore.data_dir": "./data/v2/metastore/data",
    "metastore.raft.dir": "./data/v2/metastore/raft",
    "limits.compactor_blocks_retention_period": "0s",  # "Delete blocks containing samples older than ..."
    "self_profiling.disable_push": False,         # single binary pushes its own Go profiles to itself
    "analytics.reporting_enabled": True,          # anonymous usage statistics
    "memberlist.bind_addr": [],                   # "Defaults to 0.0.0.0"
    "memberlist.advertise_addr": "",
}
# cmd/pyroscope/Dockerfile: FROM gcr.io/distroless/static (no shell, no wget), USER pyroscope, VOLUME /data,
# EXPOSE 4040, ENTRYPOINT /usr/bin/pyroscope, CMD -config.file=/etc/pyroscope/config.yaml; it also copies
# /usr/bin/profilecli.
IMAGE_CONFIG = "/etc/pyroscope/config.yaml"
IMAGE_VOLUME = "/data"
IMAGE_PROFILECLI = "/usr/bin/profilecli"
# pkg/api/api.go: RegisterReadyHandler -> GET /ready; RegisterDistributor -> /ingest and /pyroscope/ingest (the
# push API the Pyroscope SDKs use, pprof among its formats), OTLP profiles at /v1development/profiles (HTTP) and
# /opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export.
READY_PATH = "/ready"
# cmd/profilecli/main.go registers `ready` ("Check Pyroscope health."); ready.go + client.go: `profilecli ready
# --url=URL` GETs URL + "/ready" and exits non-zero unless the answer is 200.


def config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "backends/pyroscope/config.yaml").read_text())
    return data


def service() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "stack.yml").read_text())["services"]["pyroscope"]
    return data


def key_paths(node: Any, prefix: str = "") -> dict[str, Any]:
    """{'a.b.c': value} for every leaf of a nested mapping."""
    if not isinstance(node, dict):
        return {prefix: node}
    return {path: value for key, child in node.items()
            for path, value in key_paths(child, f"{prefix}.{key}" if prefix else str(key)).items()}


def test_the_pinned_image_is_the_one_these_facts_were_read_for() -> None:
    assert pinned_images()["PYROSCOPE_IMAGE"] == PINNED, "re-read the grafana/pyroscope files named in this module"
    assert COMPONENTS["pyroscope"].version == PINNED.rpartition(":")[2]


def test_every_key_is_one_pyroscope_defines() -> None:
    assert set(key_paths(config())) <= set(REFERENCE_KEYS), set(key_paths(config())) - set(REFERENCE_KEYS)


def test_it_listens_on_its_default_ports_on_every_interface_of_the_container() -> None:
    server = config()["server"]
    assert server["http_listen_port"] == REFERENCE_KEYS["server.http_listen_port"] == COMPONENTS["pyroscope"].default_port
    assert server["grpc_listen_port"] == REFERENCE_KEYS["server.grpc_listen_port"]
    assert server["http_listen_address"] == server["grpc_listen_address"] == "0.0.0.0"
    assert service()["ports"] == ["127.0.0.1:4040:4040"]  # the host publishes HTTP on loopback only


def test_profiles_live_in_the_named_volume_and_old_blocks_are_deleted() -> None:
    cfg = config()
    assert cfg["storage"]["backend"] == "filesystem"
    paths = [value for key, value in key_paths(cfg).items()
             if key.endswith(("data_path", ".dir", "data_dir"))]
    assert len(paths) == 4 and all(p.startswith(IMAGE_VOLUME + "/") for p in paths), paths
    assert f"pyroscope-data:{IMAGE_VOLUME}" in service()["volumes"]
    retention = cfg["limits"]["compactor_blocks_retention_period"]
    assert retention == "168h"  # a week, like Loki's logs (backends/loki/config.yaml retention_period)


def test_it_neither_profiles_itself_nor_reports_usage() -> None:
    assert config()["self_profiling"]["disable_push"] is True
    assert config()["analytics"]["reporting_enabled"] is False


def test_the_service_runs_the_image_with_the_box_config() -> None:
    assert service()["command"] == [f"-config.file={IMAGE_CONFIG}"]
    assert f"./backends/pyroscope/config.yaml:{IMAGE_CONFIG}:ro" in service()["volumes"]


def test_the_health_check_uses_profilecli_because_the_image_has_no_shell() -> None:
    test = service()["healthcheck"]["test"]
    assert test == ["CMD", IMAGE_PROFILECLI, "ready", "--url=http://127.0.0.1:4040"]
    assert COMPONENTS["pyroscope"].health_path == READY_PATH  # what `obsbox status` probes from the host


def test_grafana_waits_for_it_and_reads_it_through_a_fixed_uid() -> None:
    grafana = yaml.safe_load((ROOT / "stack.yml").read_text())["services"]["grafana"]
    assert grafana["depends_on"]["pyroscope"] == {"condition": "service_healthy"}
    datasources = yaml.safe_load((ROOT / "backends/grafana/provisioning/datasources/obsbox.yaml").read_text())
    (pyroscope,) = [d for d in datasources["datasources"] if d["uid"] == "pyroscope"]
    assert pyroscope["url"] == "http://pyroscope:4040"


def test_the_flame_graph_query_is_a_pyroscope_query_of_the_selected_service() -> None:
    """grafana/grafana public/app/plugins/datasource/grafana-pyroscope-datasource/dataquery.cue: labelSelector
    (default "{}"), profileTypeId, groupBy, queryType "metrics" | "profile" | "both" (default both); the flame graph
    needs the profile. A profile type id is name:sample type:unit:period type:unit."""
    board = json.loads((ROOT / "dashboards/obsbox/service-detail.json").read_text())
    (flame,) = [p for p in board["panels"] if p["type"] == "flamegraph"]
    (target,) = flame["targets"]
    assert target["datasource"] == {"type": "grafana-pyroscope-datasource", "uid": "pyroscope"}
    assert target["queryType"] == "profile" and target["groupBy"] == []
    assert len(target["profileTypeId"].split(":")) == 5
    selector = promql_parser.parse(target["labelSelector"].replace("$service_name", "orders"))
    assert str(selector) == '{service_name="orders"}'


# --- native runtime ---------------------------------------------------------------------------------------------


def test_native_pyroscope_keeps_its_data_locally_and_listens_on_loopback(tmp_path: Path) -> None:
    from obsbox.stack.render import NATIVE_PYROSCOPE_GRPC_PORT, render_pyroscope_config

    cfg = yaml.safe_load(render_pyroscope_config((ROOT / "backends/pyroscope/config.yaml").read_text(),
                                                 data_dir=tmp_path))
    assert set(key_paths(cfg)) <= set(REFERENCE_KEYS)
    server = cfg["server"]
    assert server["http_listen_address"] == server["grpc_listen_address"] == "127.0.0.1"
    assert server["http_listen_port"] == 4040
    loki = yaml.safe_load((ROOT / "backends/loki/config.yaml").read_text())
    assert server["grpc_listen_port"] == NATIVE_PYROSCOPE_GRPC_PORT != loki["server"]["grpc_listen_port"]
    assert cfg["memberlist"] == {"bind_addr": ["127.0.0.1"], "advertise_addr": "127.0.0.1"}
    paths = [v for k, v in key_paths(cfg).items() if k.endswith(("data_path", ".dir", "data_dir"))]
    assert len(paths) == 4 and all(Path(p).is_relative_to(tmp_path) for p in paths), paths
    assert cfg["self_profiling"] == config()["self_profiling"] and cfg["limits"] == config()["limits"]


def test_the_native_launcher_runs_the_binary_with_the_rendered_config(tmp_path: Path) -> None:
    from obsbox.stack.compose import StackTree
    from obsbox.stack.launch import LAUNCHERS, LaunchContext

    ctx = LaunchContext(StackTree.load(ROOT), tmp_path / "native" / "pyroscope", Path("/opt/pyroscope"), "2.0.2",
                        {"pyroscope": 4040})
    launch = LAUNCHERS["pyroscope"](ctx)
    assert launch.argv[0] == "/opt/pyroscope"
    (flag,) = launch.argv[1:]
    rendered = Path(flag.removeprefix("-config.file="))
    assert rendered.parent == ctx.dir
    assert yaml.safe_load(rendered.read_text())["pyroscopedb"]["data_path"].startswith(str(ctx.data))


# --- the Collector and OTLP profiles ------------------------------------------------------------------------------


@pytest.mark.skipif(_built_collector() is None and not os.environ.get("CI"),
                    reason="the Collector is not built: scripts/build-components.sh builds it (make test runs it)")
def test_the_pinned_collector_carries_profiles_only_behind_an_alpha_feature_gate(tmp_path: Path) -> None:
    """Why the box sends pprof straight to Pyroscope (docs/profiling.md): the pinned Collector's OTLP receiver and
    exporter take a profiles pipeline only with the alpha gate service.profilesSupport switched on."""
    binary = _built_collector()
    assert binary is not None, "scripts/build-components.sh did not build the Collector"
    gates = subprocess.run([str(binary), "featuregate"], capture_output=True, text=True, timeout=60, check=True)
    (gate,) = [line.split() for line in gates.stdout.splitlines() if line.startswith("service.profilesSupport ")]
    assert gate[1:3] == ["false", "Alpha"], gate
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"otlp_http/pyroscope": {"endpoint": "http://127.0.0.1:4040"}},
        "service": {"pipelines": {"profiles": {"receivers": ["otlp"], "exporters": ["otlp_http/pyroscope"]}}},
    }))
    refused = subprocess.run([str(binary), "validate", f"--config={path}"], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0 and "service.profilesSupport" in refused.stderr, refused.stderr
    gated = subprocess.run([str(binary), "validate", "--feature-gates=service.profilesSupport", f"--config={path}"],
                           capture_output=True, text=True, timeout=60)
    assert gated.returncode == 0, gated.stderr
    # the box's own pipelines carry no profiles: nothing depends on the gate
    shipped = yaml.safe_load((ROOT / "collector/config.yaml").read_text())
    assert not any(name.split("/")[0] == "profiles" for name in shipped["service"]["pipelines"])



# --- the library's side -------------------------------------------------------------------------------------------


def test_the_library_pushes_where_the_box_publishes_pyroscope_and_the_type_grafana_reads() -> None:
    """configure(profiling=True) with no endpoint reaches this Pyroscope, and its CPU profile is stored under the
    profile type the flame graph and the traces-to-profiles setting query (obsbox/profiling/_pyroscope.py: a sample
    type containing `cpu` makes the profile `process_cpu`; the id is name:sample type:unit:period type:unit)."""
    from obsbox.instrumentation.settings import resolve
    from obsbox.profiling.continuous import _CPU_TYPES

    port = int(service()["ports"][0].split(":")[1])
    assert resolve({}, environ={}).profiler.profiling_endpoint == f"http://127.0.0.1:{port}"
    board = json.loads((ROOT / "dashboards/obsbox/service-detail.json").read_text())
    (flame,) = [p for p in board["panels"] if p["type"] == "flamegraph"]
    cpu_type = next(t for t in _CPU_TYPES if "cpu" in t[0])
    assert flame["targets"][0]["profileTypeId"] == f"process_cpu:{cpu_type[0]}:{cpu_type[1]}:cpu:nanoseconds"


def test_profiles_carry_no_instance_id_so_no_span_tag_could_select_them() -> None:
    """Why tracesToProfiles uses a span selector and no tag mapping (tests/tree/test_grafana.py)."""
    from obsbox.instrumentation.setup import _PROFILE_LABELS

    assert "service.instance.id" not in _PROFILE_LABELS
