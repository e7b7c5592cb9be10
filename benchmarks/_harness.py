"""The moving parts of one measurement: pinned child processes, the OTLP receiver, and wrk.

    with Receiver(cpu=1) as receiver:
        server = Server("obsbox", cpu=0, receiver=receiver).start()
        try:
            result = run_wrk(server.url("/items/1"), cpu=1, connections=32, seconds=10)
        finally:
            server.stop()

Every child is pinned with taskset (or sched_setaffinity where taskset is missing), announces its ephemeral
port as "PORT <n>" on stdout, writes its stderr to a log file we can quote when it fails, and is stopped in a
finally: SIGINT first (uvicorn shuts down gracefully and the exporters flush), then SIGKILL after a bound.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
# Nothing from the caller's environment may steer a mode's exporters: each mode gets exactly what we set.
_SCRUBBED_PREFIXES = ("OTEL_", "OBSBOX_", "LOGFIRE_", "FASTAPI_OTEL_")


class StartError(RuntimeError):
    """A child did not come up; the message carries the tail of its stderr."""


def cpus() -> tuple[int, int]:
    """(server cpu, load cpu): two different cores when there are two, else the same one."""
    available = sorted(os.sched_getaffinity(0))
    return available[0], available[1] if len(available) > 1 else available[0]


def _pinned(argv: list[str], cpu: int) -> list[str]:
    if shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def _pin_after_start(pid: int, cpu: int) -> None:
    if not shutil.which("taskset"):  # fallback: pin right after exec, before the child starts any thread
        os.sched_setaffinity(pid, {cpu})


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _Child:
    """A pinned child process that prints "PORT <n>" when it listens."""

    def __init__(self, name: str, argv: list[str], cpu: int, env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.cpu = cpu
        self.env = env
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _spawn(self, timeout: float) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                _pinned(self.argv, self.cpu), stdout=subprocess.PIPE, stderr=log, env=self.env, cwd=HERE
            )
        _pin_after_start(self.proc.pid, self.cpu)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            if self.proc.poll() is not None:
                break
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk:
                    break
                line += chunk
        if not line.startswith(b"PORT "):
            self.stop()
            raise StartError(f"{self.name} did not start (exit {self.proc.returncode}):\n{_tail(self.log)}")
        self.port = int(line.split()[1])

    def stop(self, timeout: float = 20.0) -> int | None:
        """Graceful stop (SIGINT lets exporters flush), SIGKILL after `timeout`. Idempotent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        try:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0)):
                proc.send_signal(sig)
                try:
                    return proc.wait(wait)
                except subprocess.TimeoutExpired:
                    print(
                        f"  {self.name}: still running {wait:.0f}s after {sig.name}",
                        file=sys.stderr,
                        flush=True,
                    )
            proc.kill()
            return proc.wait(5)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def cleanup(self) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


class Receiver(_Child):
    """The OTLP/HTTP receiver process (benchmarks/receiver.py)."""

    def __init__(self, cpu: int) -> None:
        super().__init__("receiver", [PYTHON, str(HERE / "receiver.py")], cpu, child_env({}))

    def __enter__(self) -> Receiver:
        self._spawn(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self, service: str) -> dict[str, int]:
        with urllib.request.urlopen(self.url("/stats"), timeout=10) as response:
            counts: dict[str, dict[str, int]] = json.load(response)
        return counts.get(service, {})


class Server(_Child):
    """One benchmark server (benchmarks/app.py MODE), exporting to `receiver` as service `bench-MODE`."""

    def __init__(
        self, mode: str, cpu: int, receiver: Receiver, extra_env: dict[str, str] | None = None
    ) -> None:
        self.mode = mode
        self.service = f"bench-{mode}"
        env = child_env(
            {
                "OTEL_SERVICE_NAME": self.service,
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                # The contrib instrumentation emits the old HTTP conventions unless told otherwise.
                "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
                **(extra_env or {}),
            }
        )
        super().__init__(mode, [PYTHON, str(HERE / "app.py"), mode], cpu, env)

    def start(self, timeout: float = 60.0) -> Server:
        """Spawn, then wait until the endpoint answers 200. Returns self; raises StartError."""
        self._spawn(timeout)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url("/items/0"), timeout=5) as response:
                    if response.status == 200:
                        return self
            except Exception as exc:  # not listening yet
                last = exc
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise StartError(f"{self.mode} never answered ({last}):\n{_tail(self.log)}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a whole process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15


def cpu_times(cpu: int) -> tuple[float, float]:
    """(busy, idle) seconds of one CPU since boot, from /proc/stat (steal counts as busy: someone else ran)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(v) for v in line.split()[1:9]]  # user nice system idle iowait irq softirq steal
            hz = os.sysconf("SC_CLK_TCK")
            idle = ticks[3] + ticks[4]
            return (sum(ticks) - idle) / hz, idle / hz
    raise RuntimeError(f"cpu{cpu} not in /proc/stat")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(url: str, *, cpu: int, connections: int, seconds: float, threads: int = 1) -> WrkResult:
    """Run wrk against `url`, pinned to `cpu`; raises RuntimeError when wrk fails or reports nothing."""
    argv = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
        "-s", str(HERE / "wrk_report.lua"), url,
    ]  # fmt: skip
    done = subprocess.run(_pinned(argv, cpu), capture_output=True, text=True, timeout=seconds + 30)
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            r: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
            errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
            return WrkResult(
                r["requests"], r["duration_us"] / 1e6, errors, r["p50_us"] / 1e3, r["p99_us"] / 1e3
            )
    raise RuntimeError(f"wrk failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
