"""The on-demand /debug/pprof/ endpoint on the admin (metrics) port, in the style of Go's net/http/pprof.

>>> obsbox.configure(service_name="orders", metrics_port=9464, pprof_endpoint=True)   # doctest: +SKIP
>>> # go tool pprof -top http://127.0.0.1:9464/debug/pprof/heap
>>> obsbox.profiling.disable_pprof()    # off from now on (404), no restart      # doctest: +SKIP
>>> obsbox.profiling.enable_pprof()     # on again                               # doctest: +SKIP

Paths (all GET):
- `/debug/pprof/` — an index of the others.
- `/debug/pprof/profile?seconds=N` — CPU time of every thread over the next N seconds (default 30, at most 120),
  as Go's CPU profile: `samples`/`cpu` nanoseconds, by stack. `/debug/pprof/wall?seconds=N` — wall time, idle
  threads included. Both are taken by the continuous profiler's sampler (obsbox.profiling.continuous.Profiler at
  PROFILE_RATE Hz, a thread of its own for the request), so samples taken inside a span carry its `span_id`.
- `/debug/pprof/heap?seconds=N` — memory allocated during the next N seconds (default 10, at most 120) and still
  live at their end, by allocating stack, from tracemalloc: pprof with `inuse_objects` and `inuse_space` (the
  default). tracemalloc runs only while such a request does: it makes allocation-heavy code many times slower
  (benchmarks/tracemalloc_cost.py, docs/profiling.md), so it is never left on. When something else already runs
  tracemalloc (PYTHONTRACEMALLOC=N, the application), the answer is immediate and covers everything since then.
  The MAX_HEAP_STACKS largest stacks are named; the rest are summed into one sample
  (`<N smaller allocation stacks>`), which bounds the work (all of it slowed by tracemalloc when it runs).
- `/debug/pprof/threads` and `/debug/pprof/goroutine?debug=2` — text: every thread's stack, then every asyncio
  task's; `/debug/pprof/goroutine` without debug — the same stacks as a pprof profile counting them.

Off unless enabled (`pprof_endpoint` / OBSBOX_PPROF, or `enable_pprof()`): while off, every /debug/pprof/ path is
a 404 like any unknown path. When `pprof_token` (OBSBOX_PPROF_TOKEN) is set, every request needs
`Authorization: Bearer <token>` (compared in constant time, never logged); on an address other than loopback the
endpoint is not switched on without one. At most MAX_CONCURRENT profiles are taken at once; a request beyond that
is refused with 429, a duration beyond MAX_SECONDS with 400. Switching pprof off ends the profiles being taken
(each answers with what it has). Nothing here raises into the application: a failure is a 500 answer to the one
request.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import logging
import os
import threading
import time
import tracemalloc
import urllib.parse
from collections.abc import Callable
from typing import Any

from obsbox.profiling import _signal, _stacks
from obsbox.profiling._functions import FunctionNames
from obsbox.profiling.pprof import ProfileBuilder

__all__ = ["MAX_CONCURRENT", "Reply", "admin_server_stopped", "disable_pprof", "enable_at_configure", "enable_pprof", "pprof_enabled", "respond"]

_log = logging.getLogger("obsbox")

MAX_CONCURRENT = 4  # profiles being taken at once; more are refused with 429
MAX_SECONDS = 120  # longest profile; Go's default for a CPU profile is 30 s
PROFILE_SECONDS = 30  # default length of a CPU or wall profile, as Go's
PROFILE_RATE = 100  # samples per second, as Go's CPU profiler
HEAP_SECONDS = 10  # default window of a heap profile
TRACEMALLOC_FRAMES = 16
MAX_HEAP_STACKS = 2000  # the largest allocation stacks in a heap profile; the others are summed into one
PPROF_TYPE = "application/octet-stream"
TEXT_TYPE = "text/plain; charset=utf-8"

Reply = tuple[int, str, bytes, dict[str, str]]  # status, content type, body, extra headers


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enabled = False
        self.token: str | None = None
        self.running = 0
        self.ending = threading.Event()  # set while off: profiles being taken end now
        self.heap_requests = 0  # heap profiles running on tracemalloc that obsbox started
        self.started_tracemalloc = False
        self.own_server: Any = None  # an admin server enable_pprof(port=...) started (no metrics_port)


_state = _State()


def _after_fork_in_child() -> None:
    """A forked process does not have the thread that serves the parent's port (stopping that server would wait
    for it forever) nor the parent's profiles: pprof starts off there, as a fresh process."""
    global _state
    _state = _State()


os.register_at_fork(after_in_child=_after_fork_in_child)


def pprof_enabled() -> bool:
    """Whether /debug/pprof/ answers now."""
    return _state.enabled


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _admin_server() -> Any:
    from obsbox.instrumentation.setup import current_telemetry

    telemetry = current_telemetry()
    server = getattr(telemetry, "metrics_server", None) if telemetry is not None else None
    return server if server is not None else _state.own_server


def enable_pprof(*, token: str | None = None, port: int | None = None, host: str = "127.0.0.1") -> str | None:
    """Serve /debug/pprof/ from now on; the endpoint's URL, or None (after one warning) when it cannot be served.

    It is served on the admin port `configure(metrics_port=...)` opened. Without one, `port` (0: any free port) on
    `host` opens it now. `token` (else OBSBOX_PPROF_TOKEN / `pprof_token`) is then required from every request; an
    address other than loopback is refused without one. Never raises.
    """
    try:
        return _enable(token, port, host, None)
    except Exception:  # noqa: BLE001 - switching a debug endpoint on must not hurt the service
        _log.warning("obsbox: the pprof endpoint could not be switched on", exc_info=True)
        return None


def enable_at_configure(server: Any, token: str | None) -> None:
    """configure(pprof_endpoint=True): serve pprof on the admin port it just opened (`server`, None if none)."""
    try:
        _enable(token, None, "127.0.0.1", server)
    except Exception:  # noqa: BLE001
        _log.warning("obsbox: the pprof endpoint could not be switched on", exc_info=True)


def _enable(token: str | None, port: int | None, host: str, server: Any) -> str | None:
    from obsbox.instrumentation.setup import current_telemetry

    # Profiles are taken in the admin server's thread, which cannot set a signal handler: set SIGPROF's now, from
    # the thread that switches pprof on (usually the main one); idle until a profile arms its timer (_signal).
    _signal.install()

    telemetry = current_telemetry()
    if token is None:
        token = telemetry.settings.pull.pprof_token if telemetry is not None else None
        token = token or os.environ.get("OBSBOX_PPROF_TOKEN", "").strip() or None
    server = server or _admin_server()
    if server is None:
        if port is None:
            _log.warning("obsbox: the pprof endpoint needs an admin port: set metrics_port= (OBSBOX_METRICS_PORT) "
                         "or call enable_pprof(port=...)")
            return None
        if not _is_loopback(host) and not token:
            _refuse_open(host)
            return None
        from obsbox.instrumentation import pull

        server = pull.serve(pull.CurrentMetrics(), host, port)
        if server is None:
            return None
        _state.own_server = server
    if not _is_loopback(server.host) and not token:
        _refuse_open(server.host)
        return None
    with _state.lock:
        _state.token = token
        _state.ending.clear()
        _state.enabled = True
    url = f"http://{server.host}:{server.port}/debug/pprof/"
    _log.info("obsbox: pprof endpoint on at %s%s", url, " (bearer token required)" if token else "")
    return url


def _refuse_open(host: str) -> None:
    _log.warning("obsbox: the pprof endpoint stays off: %s is not a loopback address and no pprof_token "
                 "(OBSBOX_PPROF_TOKEN) is set", host)


def disable_pprof() -> None:
    """Stop serving /debug/pprof/ (404 from now on); profiles being taken end now. Never raises."""
    try:
        with _state.lock:
            _state.enabled = False
            _state.token = None
            _state.ending.set()
            server, _state.own_server = _state.own_server, None
        if server is not None:
            server.stop()
    except Exception:  # noqa: BLE001
        _log.debug("obsbox: disabling pprof failed", exc_info=True)


def admin_server_stopped() -> None:
    """configure()'s admin port closed (shutdown, or a new configure()): pprof served there is off."""
    if _state.enabled and _state.own_server is None:
        disable_pprof()


# --- requests ---------------------------------------------------------------------------------------------------
def respond(path: str, query: str, authorization: str | None) -> Reply | None:
    """The answer to GET `path`?`query`, or None when pprof is off or the path is not one of its (a 404)."""
    if not _state.enabled or not path.startswith("/debug/pprof"):
        return None
    token = _state.token
    if token is not None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return 401, TEXT_TYPE, b"unauthorized: send Authorization: Bearer <pprof_token>\n", {
                "WWW-Authenticate": 'Bearer realm="obsbox pprof"'}
    name = path[len("/debug/pprof"):].strip("/")
    params = urllib.parse.parse_qs(query)
    handler = _HANDLERS.get(name)
    if handler is None:
        return None
    try:
        return handler(params)
    except _BadRequest as err:
        return 400, TEXT_TYPE, f"{err}\n".encode(), {}
    except Exception:  # noqa: BLE001 - one failed request, never the service
        _log.debug("obsbox: /debug/pprof/%s failed", name, exc_info=True)
        return 500, TEXT_TYPE, f"/debug/pprof/{name} failed\n".encode(), {}


def _limited(take: Callable[[dict[str, list[str]]], Reply]) -> Callable[[dict[str, list[str]]], Reply]:
    """Refuse with 429 beyond MAX_CONCURRENT profiles being taken at once."""

    def run(params: dict[str, list[str]]) -> Reply:
        with _state.lock:
            if _state.running >= MAX_CONCURRENT:
                return 429, TEXT_TYPE, (f"too many profiles at once: at most {MAX_CONCURRENT} are taken at a time; "
                                        "retry when one has finished\n").encode(), {"Retry-After": "1"}
            _state.running += 1
        try:
            return take(params)
        finally:
            with _state.lock:
                _state.running -= 1

    return run


def _attachment(name: str, body: bytes) -> Reply:
    return 200, PPROF_TYPE, body, {"Content-Disposition": f'attachment; filename="{name}"'}


class _BadRequest(Exception):
    pass


def _seconds(params: dict[str, list[str]], default: int) -> int:
    text = params.get("seconds", [""])[0].strip()
    if not text:
        return default
    try:
        seconds = int(text)
    except ValueError:
        seconds = -1
    if not 1 <= seconds <= MAX_SECONDS:
        raise _BadRequest(f"seconds must be a whole number from 1 to {MAX_SECONDS} (asked: {text[:20]})")
    return seconds


def _heap(params: dict[str, list[str]]) -> Reply:
    seconds = _seconds(params, HEAP_SECONDS)
    with _state.lock:
        if _state.heap_requests == 0 and not tracemalloc.is_tracing():
            tracemalloc.start(TRACEMALLOC_FRAMES)
            _state.started_tracemalloc = True
        ours = _state.started_tracemalloc
        if ours:
            _state.heap_requests += 1
    try:
        if ours:
            _state.ending.wait(seconds)
        snapshot = tracemalloc.take_snapshot()
    finally:
        if ours:
            with _state.lock:
                _state.heap_requests -= 1
                if _state.heap_requests == 0:
                    tracemalloc.stop()
                    _state.started_tracemalloc = False
    builder = ProfileBuilder([("inuse_objects", "count"), ("inuse_space", "bytes")], period_type=("space", "bytes"),
                             period=1, start_ns=time.time_ns())
    # The endpoint's own allocations (tracemalloc's, the tables it builds) are left out. (Checked here rather than
    # with Snapshot.filter_traces, which matches every frame of every trace: 35 s for 130k traces.)
    own = (os.path.dirname(__file__) + os.sep, tracemalloc.__file__)
    stats = [s for s in snapshot.statistics("traceback")  # largest first
             if not any(f.filename.startswith(own) for f in s.traceback)]
    del snapshot
    kept, rest = stats[:MAX_HEAP_STACKS], stats[MAX_HEAP_STACKS:]
    names = FunctionNames({f.filename for stat in kept for f in stat.traceback})
    for stat in kept:
        frames = [(names.name(f.filename, f.lineno), f.filename, f.lineno) for f in reversed(stat.traceback)]
        builder.add(frames, [stat.count, stat.size])
    if rest:
        builder.add([(f"<{len(rest)} smaller allocation stacks>", "", 0)],
                    [sum(s.count for s in rest), sum(s.size for s in rest)])
    return _attachment("heap", builder.encode())


class _Capture:
    """The sink of an on-demand Profiler: keeps what it offers."""

    thread_ident: int | None = None

    def __init__(self) -> None:
        self.profiles: dict[str, bytes] = {}

    def start(self) -> None:
        return None

    def stop(self, timeout: float) -> None:
        return None

    def after_fork(self) -> None:
        return None

    def offer(self, kind: str, body: bytes, start_ns: int, end_ns: int) -> bool:
        self.profiles[kind] = body
        return True


def _sampled(kind: str) -> Callable[[dict[str, list[str]]], Reply]:
    def take(params: dict[str, list[str]]) -> Reply:
        from obsbox.profiling.continuous import Profiler

        seconds = _seconds(params, PROFILE_SECONDS)
        start_ns = time.time_ns()
        capture = _Capture()
        profiler = Profiler(capture, rate=PROFILE_RATE, interval=float(MAX_SECONDS * 2))  # one window: the request
        profiler.start()
        try:
            _state.ending.wait(seconds)
        finally:
            profiler.stop(timeout=10)
        body = capture.profiles.get(kind)
        if body is None:  # nothing sampled (no thread used CPU): an empty profile, still one pprof reads
            types = [("samples", "count"), (kind, "nanoseconds")]
            body = ProfileBuilder(types, period_type=(kind, "nanoseconds"), period=1_000_000_000 // PROFILE_RATE,
                                  start_ns=start_ns, duration_ns=time.time_ns() - start_ns).encode()
        return _attachment(kind if kind == "wall" else "profile", body)

    return take


def _threads(params: dict[str, list[str]]) -> Reply:
    return 200, TEXT_TYPE, _stacks.dump().encode("utf-8", "replace"), {}


def _goroutine(params: dict[str, list[str]]) -> Reply:
    if params.get("debug", ["0"])[0] not in ("", "0"):
        return _threads(params)
    return _attachment("goroutine", _stacks.stacks_profile(time.time_ns()))


_PAGES = [
    ("profile", f"CPU time by stack over ?seconds=N (default {PROFILE_SECONDS}, at most {MAX_SECONDS})"),
    ("wall", f"wall time by stack, idle threads included, over ?seconds=N (default {PROFILE_SECONDS})"),
    ("heap", f"memory allocated during ?seconds=N (default {HEAP_SECONDS}) and still live, by stack (tracemalloc)"),
    ("goroutine", "every thread's and asyncio task's stack as a pprof profile; ?debug=2 gives text"),
    ("threads", "every thread's and asyncio task's stack, as text"),
]


def _index(params: dict[str, list[str]]) -> Reply:
    rows = "\n".join(f'<tr><td><a href="/debug/pprof/{n}">{n}</a></td><td>{html.escape(d)}</td></tr>'
                     for n, d in _PAGES)
    body = (f"<html><head><title>/debug/pprof/</title></head><body><h1>/debug/pprof/</h1>\n"
            f"<p>Profiles being taken: {_state.running} (at most {MAX_CONCURRENT} at once).</p>\n"
            f"<table>\n{rows}\n</table>\n"
            "<p>Read any profile with <code>go tool pprof -top http://HOST:PORT/debug/pprof/heap</code>.</p>"
            "</body></html>\n")
    return 200, "text/html; charset=utf-8", body.encode(), {}


_HANDLERS: dict[str, Callable[[dict[str, list[str]]], Reply]] = {
    "": _index,
    "profile": _limited(_sampled("cpu")),
    "wall": _limited(_sampled("wall")),
    "heap": _limited(_heap),
    "goroutine": _goroutine,
    "threads": _threads,
}
