"""A time-based rolling count of calls and failures, in fixed buckets so memory stays bounded at any call rate."""

from __future__ import annotations

from collections import deque


class RollingWindow:
    """Calls and failures over the last `window` seconds, kept in `buckets` slices of window/buckets seconds.

    >>> w = RollingWindow(10.0)
    >>> w.record(0.0, failed=True)
    (1, 1)
    >>> w.record(1.0, failed=False)
    (2, 1)
    >>> w.totals(2.0)
    (2, 1)
    >>> w.totals(12.0)      # both calls have left the window
    (0, 0)

    A call leaves the window between window - window/buckets and window seconds after it was recorded.
    """

    __slots__ = ("_width", "_buckets", "_slices", "_calls", "_failures")

    def __init__(self, window: float, buckets: int = 10) -> None:
        if window <= 0:
            raise ValueError(f"window must be > 0 seconds, got {window}")
        self._width = window / buckets
        self._buckets = buckets
        # Each slice: [slice index, calls, failures], oldest first.
        self._slices: deque[list[int]] = deque()
        self._calls = 0
        self._failures = 0

    def record(self, now: float, *, failed: bool) -> tuple[int, int]:
        """Count one call at time `now`; returns (calls, failures) within the window, this one included."""
        index = int(now // self._width)
        slices = self._slices
        if slices and slices[-1][0] == index:
            last = slices[-1]  # same slice as the last call: nothing can have left the window since
        else:
            self._evict(index)
            last = [index, 0, 0]
            slices.append(last)
        last[1] += 1
        self._calls += 1
        if failed:
            last[2] += 1
            self._failures += 1
        return self._calls, self._failures

    def totals(self, now: float) -> tuple[int, int]:
        """(calls, failures) within the window at time `now`."""
        self._evict(int(now // self._width))
        return self._calls, self._failures

    def clear(self) -> None:
        self._slices.clear()
        self._calls = self._failures = 0

    def _evict(self, index: int) -> None:
        oldest_kept = index - self._buckets + 1
        while self._slices and self._slices[0][0] < oldest_kept:
            _, calls, failures = self._slices.popleft()
            self._calls -= calls
            self._failures -= failures
