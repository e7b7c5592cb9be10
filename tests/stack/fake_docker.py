"""A stand-in for the `docker` CLI: records each call and answers like docker 28 with the compose plugin.

Installed by the tests as an executable named `docker` first on PATH. FAKE_DOCKER_LOG: file that gets one JSON
line per call ({"argv": [...], "password": ..., "alertmanager_config": ...}). FAKE_DOCKER_MODE (comma separated):
noengine (no daemon), nocompose (no compose plugin), upfail (a port already allocated), crashed (grafana exited
in `ps`), empty (nothing in `ps`).
"""

import json
import os
import sys

argv = sys.argv[1:]
modes = set(filter(None, os.environ.get("FAKE_DOCKER_MODE", "").split(",")))
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps({
        "argv": argv,
        "password": os.environ.get("OBSBOX_GRAFANA_PASSWORD"),
        "alertmanager_config": os.environ.get("OBSBOX_ALERTMANAGER_CONFIG"),
    }) + "\n")

# What the real docker CLI 28 and Compose 5.6 print without an engine (tests/stack/test_docker_cli.py compares).
NO_DAEMON = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n"
NO_API = ("failed to connect to the docker API at unix:///var/run/docker.sock; check if the path is correct and if "
          "the daemon is running: dial unix /var/run/docker.sock: connect: no such file or directory\n")


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(message)
    sys.exit(code)


if argv[:1] == ["version"]:
    if "noengine" in modes:
        print("Client: Docker Engine - Community\n Version: 28.2.2")
        fail(NO_DAEMON)
    print("28.2.2")
    sys.exit(0)

if argv[:1] != ["compose"]:
    fail(f"docker: unknown command: docker {' '.join(argv[:1])}\n")
if "nocompose" in modes:
    # Without the plugin the docker CLI parses the flags itself: the first one it does not know stops it (125).
    flag = next((a for a in argv[1:] if a.startswith("-")), None)
    if flag is not None:
        what = (f"unknown flag: {flag.split('=')[0]}" if flag.startswith("--")
                else f"unknown shorthand flag: '{flag[1]}' in {flag}")
        fail(f"{what}\n\nUsage:  docker [OPTIONS] COMMAND [ARG...]\n\nRun 'docker --help' for more information\n", 125)
    fail("docker: unknown command: docker compose\n\nRun 'docker --help' for more information\n")

rest = argv[1:]
if rest[:1] == ["version"]:
    print("2.36.2")
    sys.exit(0)
# Global options come first: -p NAME -f FILE [--env-file FILE] [--profile P]...
while rest and rest[0] in ("-p", "-f", "--env-file", "--profile"):
    rest = rest[2:]
command = rest[:1]

if "noengine" in modes:
    fail(NO_API)
if command == ["up"]:
    sys.stderr.write(" prometheus Pulling \n 3f4ca61aafcd Downloading [=====>     ]  12.5MB/25MB\n prometheus Pulled \n")
    if "upfail" in modes:
        fail("Error response from daemon: failed to set up container networking: driver failed programming "
             "external connectivity on endpoint obsbox-prometheus-1: Bind for 127.0.0.1:9090 failed: port is "
             "already allocated\n")
    sys.stderr.write(" Container obsbox-prometheus-1  Healthy\n")
    sys.exit(0)
if command == ["ps"]:
    if "empty" in modes:
        sys.exit(0)
    rows = []
    # Host ports as the test's tree publishes them (FAKE_DOCKER_PORTS, JSON service -> port).
    published = json.loads(os.environ.get("FAKE_DOCKER_PORTS", "{}"))
    for service, image, target in (("prometheus", "prom/prometheus:v3.14.0", 9090),
                                   ("alertmanager", "prom/alertmanager:v0.34.0", 9093),
                                   ("grafana", "grafana/grafana:13.2.0", 3000)):
        port = published.get(service, target)
        crashed = "crashed" in modes and service == "grafana"
        rows.append({
            "Name": f"obsbox-{service}-1", "Service": service, "Image": image,
            "State": "exited" if crashed else "running", "Health": "" if crashed else "healthy",
            "ExitCode": 1 if crashed else 0,
            "Publishers": [] if crashed else [{"URL": "127.0.0.1", "TargetPort": target, "PublishedPort": port,
                                               "Protocol": "tcp"}],
        })
    health_port = os.environ.get("FAKE_DOCKER_COLLECTOR_HEALTH_PORT")
    if health_port:  # the collector image has no health check: compose reports an empty Health
        rows.append({"Name": "obsbox-collector-1", "Service": "collector",
                     "Image": "otel/opentelemetry-collector-contrib:0.159.0", "State": "running", "Health": "",
                     "ExitCode": 0, "Publishers": [
                         {"URL": "127.0.0.1", "TargetPort": 4317, "PublishedPort": 4317, "Protocol": "tcp"},
                         {"URL": "127.0.0.1", "TargetPort": 4318, "PublishedPort": 4318, "Protocol": "tcp"},
                         {"URL": "127.0.0.1", "TargetPort": 13133, "PublishedPort": int(health_port),
                          "Protocol": "tcp"}]})
    # compose >= 2.21 prints one JSON object per line
    print("\n".join(json.dumps(r) for r in rows))
    sys.exit(0)
if command in (["down"], ["logs"]):
    if command == ["logs"]:
        print("prometheus-1  | ts=2026-11-22T04:00:00Z level=info msg=\"Server is ready to receive web requests.\"")
    sys.exit(0)
fail(f"unknown compose command {command}\n")
