"""The main thread's SIGPROF timer (obsbox.profiling._signal), run in a child process of its own: a SIGPROF handler
and a CPU timer are process-wide, so they stay out of the test process.

On Linux the timer is the main thread's own CPU-time clock: SIGPROF comes per second of the main thread's CPU and
never because another thread burns CPU. ITIMER_PROF, the fallback, would fire per second of the whole process's
CPU, so a busy exporter thread would make the main thread's handler run at several times the profiling rate.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROGRAM = textwrap.dedent("""
    import json, os, re, signal, threading, time, zlib
    from obsbox.profiling import _signal

    runs = [0]
    handler = _signal._on_sigprof
    def counting(signum, frame):         # every run of the handler, whether or not it records
        runs[0] += 1
        handler(signum, frame)
    _signal._on_sigprof = counting

    calls = []
    def record(frame, cpu_ns):
        calls.append((frame.f_code.co_name, cpu_ns))

    def sigprof_timers():
        with open("/proc/self/timers") as f:
            return [block for block in re.split(r"^ID:", f.read(), flags=re.M) if "signal: 27/" in block]

    assert _signal.install()
    assert _signal.arm(record, 0.01)            # 100 per second of CPU
    timers, itimer = sigprof_timers(), signal.getitimer(signal.ITIMER_PROF)

    def burn(seconds):
        start = time.thread_time()
        x = 0
        while time.thread_time() - start < seconds:
            x += 1
        return x

    stop = threading.Event()
    def compress():                             # CPU in another thread, without the GIL (zlib lets go of it)
        data = os.urandom(1 << 20)
        while not stop.is_set():
            zlib.compress(data, 9)
    other = threading.Thread(target=compress)
    other.start()
    time.sleep(0.05)
    main_cpu = time.thread_time()
    burn(0.6)                                   # the main thread's CPU, while the other thread burns its own
    main_cpu = time.thread_time() - main_cpu
    runs_while_burning = runs[0]
    stop.set()
    other.join()
    samples = list(calls)
    _signal.disarm(record)
    after = len(calls)
    burn(0.2)
    print(json.dumps({
        "pid": os.getpid(),
        "thread_timer": _signal._timer.thread_timer() or bool(timers),
        "timers": timers,
        "itimer": itimer,
        "timers_after_disarm": sigprof_timers(),
        "main_cpu_s": main_cpu,
        "handler_runs": runs_while_burning,
        "samples": len(samples),
        "in_burn": sum(1 for name, _ in samples if name == "burn"),
        "cpu_ns": sum(ns for _, ns in samples),
        "after_disarm": len(calls) - after,
    }))
""")


def _run(tmp_path: Path) -> dict[str, object]:
    script = tmp_path / "timer.py"
    script.write_text(PROGRAM)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the thread CPU-time timer is Linux's")
def test_sigprof_comes_per_second_of_the_main_threads_cpu_and_not_for_another_threads(tmp_path: Path) -> None:
    out = _run(tmp_path)
    # The kernel's side: one POSIX timer sending SIGPROF (27) to the main thread (its tid is the pid), on that
    # thread's CPU clock; ITIMER_PROF stays off. Disarmed, the timer is gone.
    assert len(out["timers"]) == 1, out
    assert f"notify: signal/tid.{out['pid']}" in out["timers"][0], out
    assert f"ClockID: {(~out['pid'] << 3) | 6}\n" in out["timers"][0], out  # MAKE_THREAD_CPUCLOCK(pid, SCHED)
    assert out["itimer"] == [0.0, 0.0], out
    assert out["timers_after_disarm"] == [], out
    # 0.6 s of the main thread's CPU at 100 Hz, while another thread burnt CPU of its own: about 60 runs of the
    # handler. ITIMER_PROF counts the whole process's CPU and would have run it about twice as often.
    assert 30 <= out["handler_runs"] <= 75, out
    assert out["in_burn"] >= 0.9 * out["samples"] >= 0.9 * 30, out  # charged to the frame that burnt the CPU
    # what the samples carry is the main thread's CPU between two runs: together about the 0.6 s burnt
    assert 0.7 * out["main_cpu_s"] * 1e9 <= out["cpu_ns"] <= 1.05 * out["main_cpu_s"] * 1e9, out
    assert out["after_disarm"] == 0, out
