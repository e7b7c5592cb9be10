"""The continuous profiler end to end: a program burns CPU in a known function inside a span, with profiling on;
what it sends to a receiver speaking Pyroscope's ingest API is read with the real `go tool pprof`.

The receiver keeps each request as Pyroscope's /ingest handler would see it (path, query, body). The facts of that
API which obsbox relies on (grafana/pyroscope: pkg/ingester/pyroscope/ingest_handler.go, og/convert/pprof/
profile.go, api/model/labelset, pkg/distributor pprofsplit) are pinned in `test_request_is_what_pyroscope_parses`.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from obsbox.testing import OTLPReceiver
from tests._processes import free_port
from tests.profiling._gopprof import go_pprof

pytestmark = pytest.mark.slow


@dataclass
class Ingested:
    path: str
    query: dict[str, str]
    content_type: str
    body: bytes


class IngestReceiver:
    """Pyroscope's HTTP ingest API as far as obsbox uses it: POST /ingest, 200 with an empty body."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[Ingested] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = urllib.parse.urlsplit(self.path)
                receiver.requests.append(Ingested(parts.path, dict(urllib.parse.parse_qsl(parts.query)),
                                                  self.headers.get("Content-Type", ""), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ingest() -> Iterator[IngestReceiver]:
    receiver = IngestReceiver()
    yield receiver
    receiver.close()


BURNER = textwrap.dedent("""
    import os, sys, time
    import obsbox

    telemetry = obsbox.configure(service_name="burner", environment="test", console=bool(os.environ.get("CONSOLE")),
                                 endpoint=os.environ["OTLP"], schedule_delay=0.05,
                                 profiling_interval=float(os.environ.get("INTERVAL", "1")))

    def burn_cpu_here(n):
        x = 0
        for i in range(n):
            x += i * i
        return x

    def idle_outside_spans():
        time.sleep(0.3)

    with telemetry.tracer.start_as_current_span("burn"):
        deadline = time.monotonic() + float(os.environ.get("BURN", "2"))
        while time.monotonic() < deadline:
            burn_cpu_here(20_000)
    idle_outside_spans()
    if os.environ.get("FORK"):
        pid = os.fork()
        if pid == 0:  # a gunicorn-style worker: profiles itself, in its own span
            with telemetry.tracer.start_as_current_span("child"):
                deadline = time.monotonic() + 1.5
                while time.monotonic() < deadline:
                    burn_cpu_here(20_000)
            telemetry.shutdown()
            os._exit(0)
        os.waitpid(pid, 0)
    telemetry.shutdown()
    print("exported", file=sys.stderr)
""")


def _run(tmp_path: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "burner.py"
    script.write_text(BURNER)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OBSBOX_", "OTEL_"))}
    full.update(env)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout,
                          env=full, check=False)


def _save(tmp_path: Path, requests: list[Ingested], kind: str) -> list[Path]:
    """The profiles of one kind (by their sample types, as Pyroscope tells them apart) as files for go tool pprof."""
    paths = []
    for i, request in enumerate(requests):
        path = tmp_path / f"{kind}-{i}.pb.gz"
        path.write_bytes(request.body)
        if f"{kind}/nanoseconds" in go_pprof("-raw", path):
            paths.append(path)
    return paths


def _span_id(receiver: OTLPReceiver, name: str) -> str:
    (span,) = receiver.wait_for(lambda: receiver.spans(name=name))
    return str(span.span_id)


def test_hot_function_and_span_id_read_by_go_pprof(tmp_path: Path, ingest: IngestReceiver) -> None:
    with OTLPReceiver() as otlp:
        result = _run(tmp_path, {"OTLP": otlp.endpoint, "OBSBOX_PROFILING": "true",
                                 "OBSBOX_PROFILING_ENDPOINT": ingest.endpoint})
        assert result.returncode == 0, result.stderr
        span_id = _span_id(otlp, "burn")
    assert re.fullmatch(r"[0-9a-f]{16}", span_id)
    cpu = _save(tmp_path, ingest.requests, "cpu")
    wall = _save(tmp_path, ingest.requests, "wall")
    assert cpu and wall, [r.query for r in ingest.requests]
    # go tool pprof merges the profiles given together, as Pyroscope adds up a time range.
    top = go_pprof("-top", *cpu)
    rows = [line.split() for line in top.splitlines() if re.match(r"\s*[\d.]+m?s\s", line)]
    assert rows[0][-1] == "burn_cpu_here", top  # the hot function first, by flat CPU time
    tags = go_pprof("-tags", *cpu)
    assert re.search(rf"span_id: Total .*\n\s+[\d.]+m?s \(\s*[\d.]+%\): {span_id}\b", tags), tags
    traces = go_pprof("-traces", *cpu)
    blocks = traces.split("-----------+")
    burning = [b for b in blocks if "burn_cpu_here" in b]
    assert burning and all(f"span_id:  {span_id}" in b for b in burning), traces
    assert all("<module>" in b for b in burning), traces  # the caller chain up to the module
    # Wall time: the idle sleep after the span is there, without a span id.
    wall_traces = go_pprof("-traces", *wall)
    idle = [b for b in wall_traces.split("-----------+") if "idle_outside_spans" in b]
    assert idle and not any("span_id" in b for b in idle), wall_traces


def test_request_is_what_pyroscope_parses(tmp_path: Path, ingest: IngestReceiver) -> None:
    with OTLPReceiver() as otlp:
        result = _run(tmp_path, {"OTLP": otlp.endpoint, "OBSBOX_PROFILING": "1",
                                 "OBSBOX_PROFILING_ENDPOINT": ingest.endpoint + "/"})
        assert result.returncode == 0, result.stderr
    assert ingest.requests
    for request in ingest.requests:
        assert request.path == "/ingest"
        # format=pprof: Pyroscope takes the raw body as the profile (no multipart form); gzip is accepted.
        assert request.query["format"] == "pprof"
        assert gzip.decompress(request.body)
        # name=app{k=v,...}: the app name becomes service_name; resource labels as Prometheus-style names.
        assert request.query["name"] == "burner{deployment_environment_name=test}"
        assert request.query["spyName"] == "obsbox"  # not pyspy/rbspy: function names are kept as they are
        assert request.query["sampleRate"] == "19"  # the profiling rate in force (the default: 19 Hz)
        assert re.fullmatch(r"\d{10}", request.query["from"]) and re.fullmatch(r"\d{10}", request.query["until"])
        assert int(request.query["from"]) <= int(request.query["until"])
    kinds = []
    for i, request in enumerate(ingest.requests):
        path = tmp_path / f"p{i}.pb.gz"
        path.write_bytes(request.body)
        raw = go_pprof("-raw", path)
        types = re.search(r"Samples:\n(.*)\n", raw)
        assert types, raw
        kinds.append(types.group(1).strip())
        # Only span_id is sent as a sample label: Pyroscope makes every other sample label a series label.
        assert set(re.findall(r"(\w+):\[", raw)) <= {"span_id"}, raw
    # Pyroscope names a profile `wall` when a sample type is `wall`, `process_cpu` when one contains `cpu`:
    # so CPU and wall go as separate profiles, the CPU one with Go's sample types.
    assert set(kinds) == {"samples/count cpu/nanoseconds", "samples/count wall/nanoseconds"}, kinds


def test_off_by_default(tmp_path: Path, ingest: IngestReceiver) -> None:
    with OTLPReceiver() as otlp:
        result = _run(tmp_path, {"OTLP": otlp.endpoint, "BURN": "0.5"})
        assert result.returncode == 0, result.stderr
        otlp.wait_for(lambda: otlp.spans(name="burn"))
    assert ingest.requests == []


def test_unreachable_pyroscope_drops_counts_and_warns_once(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with OTLPReceiver() as otlp:
        result = _run(tmp_path, {"OTLP": otlp.endpoint, "OBSBOX_PROFILING": "true", "BURN": "2.5",
                                 "OBSBOX_PROFILING_ENDPOINT": f"http://127.0.0.1:{port}", "INTERVAL": "0.5",
                                 "CONSOLE": "1"},
                      timeout=90)
        assert result.returncode == 0, result.stderr
        assert "exported" in result.stderr  # the program ran to its end: nothing raised into it
        assert result.stderr.count("profiles cannot be sent") == 1, result.stderr
        points = otlp.wait_for(lambda: [p for p in otlp.metrics("obsbox.export.items")
                                        if p.attributes.get("signal") == "profiles"
                                        and p.attributes.get("export.outcome") == "dropped" and p.value >= 2])
    assert points


def test_forked_child_profiles_itself(tmp_path: Path, ingest: IngestReceiver) -> None:
    with OTLPReceiver() as otlp:
        result = _run(tmp_path, {"OTLP": otlp.endpoint, "OBSBOX_PROFILING": "true", "FORK": "1", "BURN": "1",
                                 "OBSBOX_PROFILING_ENDPOINT": ingest.endpoint})
        assert result.returncode == 0, result.stderr
        parent_span = _span_id(otlp, "burn")
        child_span = _span_id(otlp, "child")
    cpu = _save(tmp_path, ingest.requests, "cpu")
    tags = go_pprof("-tags", *cpu)
    # Samples in the child's span reached Pyroscope: the child's own sampler thread took them.
    assert child_span in tags and parent_span in tags, tags


ASYNC_PROGRAM = textwrap.dedent("""
    import asyncio, os, time
    import obsbox

    telemetry = obsbox.configure(service_name="tasks", console=False, endpoint=os.environ["OTLP"],
                                 schedule_delay=0.05, profiling_interval=1.0)
    tracer = telemetry.tracer

    def burn_in_task(n):
        x = 0
        for i in range(n):
            x += i * i
        return x

    async def burner():
        with tracer.start_as_current_span("async-burn"):
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                # Bursts shorter than the 5 ms switch interval, as a web handler's: a sampler thread gets the GIL
                # only where the loop lets go of it (select) and would charge this CPU there; SIGPROF does not.
                burn_in_task(20_000)
                await asyncio.sleep(0)  # the other task runs in between, on the same thread

    async def waiter():
        with tracer.start_as_current_span("async-wait"):
            for _ in range(400):
                await asyncio.sleep(0.001)

    async def main():
        await asyncio.gather(asyncio.create_task(burner(), name="burner"), asyncio.create_task(waiter()))

    asyncio.run(main())
    telemetry.shutdown()
""")


def test_asyncio_task_samples_carry_their_own_span(tmp_path: Path, ingest: IngestReceiver) -> None:
    script = tmp_path / "tasks.py"
    script.write_text(ASYNC_PROGRAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBSBOX_", "OTEL_"))}
    with OTLPReceiver() as otlp:
        env.update({"OTLP": otlp.endpoint, "OBSBOX_PROFILING": "true", "OBSBOX_PROFILING_ENDPOINT": ingest.endpoint})
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env,
                                check=False)
        assert result.returncode == 0, result.stderr
        burn_span, wait_span = _span_id(otlp, "async-burn"), _span_id(otlp, "async-wait")
    cpu = _save(tmp_path, ingest.requests, "cpu")
    traces = go_pprof("-traces", *cpu)
    burning = [b for b in traces.split("-----------+") if "burn_in_task" in b]
    # Both tasks take turns on one thread: each sample is labelled with the span of the task that was running.
    assert burning and all(f"span_id:  {burn_span}" in b for b in burning), traces
    assert not any(wait_span in b for b in burning), traces
    assert all("<task burner>" in b for b in burning), traces  # a task's chosen name, as the root frame
    # The CPU is charged to the function that burns it, not to the event loop's select (SIGPROF, obsbox.profiling.
    # _signal: before it, this program's profile had 1.90 s in EpollSelector.select and none in burn_in_task).
    top = go_pprof("-top", *cpu)
    flat = {line.split()[-1]: float(line.split()[1].rstrip("%")) for line in top.splitlines()
            if re.match(r"\s*[\d.]+\w*s\s+[\d.]+%", line)}
    assert flat.get("burn_in_task", 0.0) >= 50.0, top


SIGPROF_TAKEN_PROGRAM = textwrap.dedent("""
    import os, signal, time
    import obsbox

    def theirs(signum, frame):
        pass

    signal.signal(signal.SIGPROF, theirs)   # another profiler's handler, set first
    telemetry = obsbox.configure(service_name="taken", console=False, endpoint=os.environ["OTLP"],
                                 profiling_interval=1.0)
    tracer = telemetry.tracer

    def burn_elsewhere(n):
        x = 0
        for i in range(n):
            x += i * i
        return x

    with tracer.start_as_current_span("work"):
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            burn_elsewhere(300_000)
    telemetry.shutdown()
    assert signal.getsignal(signal.SIGPROF) is theirs, signal.getsignal(signal.SIGPROF)
    print("kept")
""")


def test_a_sigprof_handler_of_someone_else_is_kept_and_the_sampler_thread_profiles(
        tmp_path: Path, ingest: IngestReceiver) -> None:
    script = tmp_path / "taken.py"
    script.write_text(SIGPROF_TAKEN_PROGRAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBSBOX_", "OTEL_"))}
    with OTLPReceiver() as otlp:
        env.update({"OTLP": otlp.endpoint, "OBSBOX_PROFILING": "true", "OBSBOX_PROFILING_ENDPOINT": ingest.endpoint})
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env,
                                check=False)
    assert result.returncode == 0 and "kept" in result.stdout, result.stderr
    top = go_pprof("-top", *_save(tmp_path, ingest.requests, "cpu"))
    assert "burn_elsewhere" in top, top  # long bursts: the sampler thread sees them without SIGPROF


PAUSE_PROGRAM = textwrap.dedent("""
    import json, re, sys, time
    from opentelemetry import context as context_api
    from obsbox.profiling.continuous import Profiler

    class Sink:                                  # what the profiler hands on, kept here
        thread_ident = None
        def __init__(self): self.offered = []
        def start(self): pass
        def stop(self, timeout): pass
        def after_fork(self): pass
        def offer(self, kind, body, start_ns, end_ns):
            self.offered.append(kind)
            return True

    def sigprof_timers():
        with open("/proc/self/timers") as f:
            return sum(1 for block in re.split(r"^ID:", f.read(), flags=re.M) if "signal: 27/" in block)

    def burn(seconds):
        start = time.thread_time()
        while time.thread_time() - start < seconds:
            pass

    def state(ticks_before):
        return {"timers": sigprof_timers(), "ticks": profiler.ticks - ticks_before,
                "runtime": type(context_api._RUNTIME_CONTEXT).__name__}

    sink = Sink()
    profiler = Profiler(sink, rate=100, interval=3600.0)
    profiler.start()
    ticks = profiler.ticks
    burn(0.3)
    on = state(ticks)
    profiler.pause()
    time.sleep(0.05)
    ticks = profiler.ticks
    burn(0.3)                                    # paused: neither sampled nor charged to anything
    paused = state(ticks)
    profiler.resume()
    ticks = profiler.ticks
    burn(0.3)
    resumed = state(ticks)
    profiler.pause()
    profiler._drain_main()
    cpu_s = sum(values[1] for values in profiler._counts.values()) / 1e9
    sent_before_stop = list(sink.offered)
    profiler.stop()
    print(json.dumps({"on": on, "paused": paused, "resumed": resumed, "cpu_s": cpu_s,
                      "sent_before_stop": sent_before_stop, "sent": sink.offered}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/timers and the thread CPU timer")
def test_pause_stops_every_part_of_sampling_and_resume_takes_it_up_with_the_window_kept(tmp_path: Path) -> None:
    script = tmp_path / "pause.py"
    script.write_text(PAUSE_PROGRAM)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # Sampling: the main thread's SIGPROF timer, the sampler thread's ticks, spans noted through the runtime context.
    assert out["on"]["timers"] == 1 and out["on"]["ticks"] >= 5 and out["on"]["runtime"] == "_NotingContext", out
    assert out["paused"] == {"timers": 0, "ticks": 0, "runtime": "ContextVarsRuntimeContext"}, out
    assert out["resumed"]["timers"] == 1 and out["resumed"]["ticks"] >= 5, out
    assert out["resumed"]["runtime"] == "_NotingContext", out
    # The window holds the CPU of the 0.6 s burnt while sampling, not the 0.3 s burnt while paused ...
    assert 0.4 <= out["cpu_s"] <= 0.66, out
    # ... and is sent once, when the profiler stops (its interval is an hour): nothing was lost to the pause.
    assert out["sent_before_stop"] == [] and sorted(out["sent"]) == ["cpu", "wall"], out


def test_the_walk_keeps_instruction_offsets_whose_lines_are_what_f_lineno_says() -> None:
    from obsbox.profiling.continuous import _Lines, _walk

    seen: list[tuple[Any, ...]] = []

    def leaf() -> None:
        frame = sys._getframe()
        (key, codes), here = _walk(frame, None), frame.f_lineno  # (this frame's line while it walked)
        expected = [(frame.f_code.co_qualname, here)]
        f: Any = frame.f_back
        while f is not None:
            expected.append((f.f_code.co_qualname, f.f_lineno))
            f = f.f_back
        lines = _Lines()
        seen.append((expected, [(c.co_qualname, lines.line(c, key[2 * i + 1])) for i, c in enumerate(codes)]))

    def middle(n: int) -> None:
        x = n * 2
        if x > 2:
            leaf()  # a call on a line further down than the function's first
        else:
            for _ in range(1):
                leaf()

    middle(5)
    middle(0)
    for expected, found in seen:
        assert found == expected[:len(found)] and len(found) == min(len(expected), 128), (found, expected)
    assert seen[0][1][1][1] != seen[1][1][1][1]  # middle's two calls, on two lines, told apart
