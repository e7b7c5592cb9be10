"""Load for the sample shop: a steady rate of realistic requests through the gateway, for a bounded time.

>>> from obsbox.samples import load
>>> summary = load.run("http://127.0.0.1:8080", rps=5, duration=60)     # doctest: +SKIP
  10s   50 sent   5.0/s   0 errors
>>> print(summary.format())                                            # doctest: +SKIP

The mix: ~70% browsing (the catalogue, an item, an order's status), ~25% new orders, each with a fresh
Idempotency-Key, ~5% replays of a recent order with the same key and body (a client retrying after a timeout;
the shop must answer without charging again). Requests start on a fixed schedule (open loop), so a slow shop
shows as latency and errors rather than as a politely lower rate; at most `concurrency` are in flight, which
bounds what the generator can pile onto a struggling service. An error is a 5xx answer or no answer (timeout,
refused connection). Progress is reported every second: to `progress` (a callable) or printed to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

SKUS = ("tea-01", "tea-02", "mug-01", "pot-01")
MIX = (("browse", 0.70), ("order", 0.25), ("replay", 0.05))


@dataclass(frozen=True)
class Progress:
    """A once-a-second report: totals so far and the rate achieved over the last second."""

    elapsed_s: float
    sent: int
    completed: int
    errors: int
    in_flight: int
    rate: float  # requests started per second over the last second
    target_rps: float

    def format(self) -> str:
        return (f"{self.elapsed_s:5.0f}s {self.sent:5d} sent {self.rate:6.1f}/s (target {self.target_rps:g}) "
                f"{self.errors:4d} errors {self.in_flight:3d} in flight")


@dataclass
class Summary:
    """The run's outcome: counts by kind and status, errors, latency percentiles of completed requests."""

    requests: int = 0
    errors: int = 0
    duration_s: float = 0.0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)  # "200", "503", "timeout", "connect_error", ...
    errors_by_status: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list, repr=False)

    @property
    def achieved_rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def percentile(self, q: float) -> float:
        """Latency (seconds) at quantile q (0..1), nearest rank; 0.0 when nothing completed."""
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    @property
    def p50_ms(self) -> float:
        return self.percentile(0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return self.percentile(0.99) * 1000

    def format(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_kind.items()))
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors_by_status.items())) or "none"
        return (f"{self.requests} requests in {self.duration_s:.1f} s ({self.achieved_rps:.1f}/s): {kinds}\n"
                f"statuses: {statuses}\nerrors: {self.errors} ({errors})\n"
                f"latency p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms")


def print_progress(progress: Progress) -> None:
    print(progress.format(), file=sys.stderr, flush=True)


class _Traffic:
    """Picks the next request of the mix and remembers recent orders so they can be replayed or looked up."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.recent_orders: deque[tuple[str, dict[str, Any]]] = deque(maxlen=200)  # (idempotency key, body)
        self.order_ids: deque[str] = deque(maxlen=200)

    def next(self) -> tuple[str, str, str, dict[str, Any] | None, dict[str, str]]:
        """(kind, method, path, json body, headers)."""
        kind = self._rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        if kind == "replay" and self.recent_orders:
            key, body = self._rng.choice(self.recent_orders)
            return "replay", "POST", "/orders", body, {"Idempotency-Key": key}
        if kind in ("order", "replay"):
            key = str(uuid.uuid4())
            body = {"sku": self._rng.choice(SKUS), "quantity": self._rng.randint(1, 3)}
            self.recent_orders.append((key, body))
            return "order", "POST", "/orders", body, {"Idempotency-Key": key}
        roll = self._rng.random()
        if roll < 0.1 and self.order_ids:
            return "browse", "GET", f"/orders/{self._rng.choice(self.order_ids)}", None, {}
        if roll < 0.4:
            return "browse", "GET", f"/catalogue/{self._rng.choice(SKUS)}", None, {}
        return "browse", "GET", "/catalogue", None, {}


async def run_async(
    gateway_url: str,
    *,
    rps: float,
    duration: float,
    progress: Callable[[Progress], None] | None = print_progress,
    concurrency: int | None = None,
    timeout: float = 5.0,
    seed: int | None = None,
) -> Summary:
    """As `run`, inside a running event loop."""
    if rps <= 0:
        raise ValueError(f"rps must be more than 0, got {rps!r}")
    if duration <= 0:
        raise ValueError(f"duration must be more than 0 seconds, got {duration!r}")
    limit = concurrency if concurrency is not None else max(8, min(256, int(rps * timeout)))
    base = gateway_url.rstrip("/")
    traffic = _Traffic(random.Random(seed))
    summary = Summary()
    slots = asyncio.Semaphore(limit)
    tasks: set[asyncio.Task[None]] = set()
    completed = 0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal completed
        kind, method, path, body, headers = traffic.next()
        summary.by_kind[kind] += 1
        started = time.perf_counter()
        try:
            response = await client.request(method, base + path, json=body, headers=headers)
            status = str(response.status_code)
            failed = response.status_code >= 500
            if response.status_code == 201 and kind == "order":
                with contextlib.suppress(ValueError, KeyError, TypeError):  # remember it for order-status browsing
                    traffic.order_ids.append(str(response.json()["order_id"]))
        except httpx.TimeoutException:
            status, failed = "timeout", True
        except httpx.TransportError as exc:
            status, failed = type(exc).__name__, True
        finally:
            slots.release()
        summary.latencies_s.append(time.perf_counter() - started)
        summary.by_status[status] += 1
        completed += 1
        if failed:
            summary.errors += 1
            summary.errors_by_status[status] += 1

    ticks = {"reported": 0, "sent": 0}  # seconds reported so far, requests sent at the last report

    def tick(start: float) -> None:
        if progress is not None:
            progress(Progress(time.monotonic() - start, summary.requests, completed, summary.errors, len(tasks),
                              summary.requests - ticks["sent"], rps))
        ticks["reported"] += 1
        ticks["sent"] = summary.requests

    async def report(start: float) -> None:
        """Once a second, independent of the sender (which may be waiting for a free slot)."""
        while True:
            await asyncio.sleep(max(0.0, start + ticks["reported"] + 1 - time.monotonic()))
            tick(start)

    limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        start = time.monotonic()
        end = start + duration
        reporter = asyncio.create_task(report(start))
        try:
            while (now := time.monotonic()) < end:
                due = int((now - start) * rps) + 1  # requests that should have started by now
                while summary.requests < due:
                    try:  # bounded: wait for a free slot rather than queue without end, but not past the end
                        await asyncio.wait_for(slots.acquire(), max(0.001, end - time.monotonic()))
                    except asyncio.TimeoutError:
                        break
                    summary.requests += 1
                    task = asyncio.create_task(one(client))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(min(1.0 / rps, 0.05, max(0.0, end - time.monotonic())))
            summary.duration_s = time.monotonic() - start
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
        if ticks["reported"] < int(duration):  # the last second's report, were it cut off by the end
            tick(start)
        if tasks:  # let the last requests finish (each is bounded by `timeout`)
            await asyncio.wait(set(tasks), timeout=timeout + 1.0)
        leftover = list(tasks)
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
    return summary


def run(
    gateway_url: str,
    *,
    rps: float,
    duration: float,
    progress: Callable[[Progress], None] | None = print_progress,
    concurrency: int | None = None,
    timeout: float = 5.0,
    seed: int | None = None,
) -> Summary:
    """Send `rps` requests per second to the shop's gateway for `duration` seconds; return the summary.

    progress: called once a second with a `Progress` (default: print it to stderr; None: stay quiet).
    concurrency: most requests in flight at once (default: enough for `rps` at `timeout`, at most 256).
    """
    return asyncio.run(run_async(gateway_url, rps=rps, duration=duration, progress=progress,
                                 concurrency=concurrency, timeout=timeout, seed=seed))
