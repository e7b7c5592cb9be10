"""The rolling window behind the breaker: bounded buckets, exact totals inside the window."""

from __future__ import annotations

import pytest

from obsbox.resilience._window import RollingWindow


def test_counts_within_window() -> None:
    w = RollingWindow(10.0, buckets=10)
    for t in range(10):
        w.record(float(t), failed=t % 2 == 0)
    assert w.totals(9.5) == (10, 5)


def test_old_slices_leave() -> None:
    w = RollingWindow(10.0, buckets=10)
    w.record(0.5, failed=True)
    w.record(5.5, failed=False)
    assert w.totals(9.9) == (2, 1)
    assert w.totals(10.0) == (1, 0)  # the slice [0, 1) left at 10
    assert w.totals(16.0) == (0, 0)


def test_memory_is_bounded_by_buckets() -> None:
    w = RollingWindow(1.0, buckets=8)  # slices of 1/8 s: exact in binary floating point
    for i in range(10 * 1024):
        w.record(i / 1024, failed=i % 4 == 0)
    assert len(w._slices) <= 8
    assert w.totals((10 * 1024 - 1) / 1024) == (1024, 256)  # exactly the records of the last second


def test_clear_and_validation() -> None:
    w = RollingWindow(1.0)
    w.record(0.0, failed=True)
    w.clear()
    assert w.totals(0.0) == (0, 0)
    with pytest.raises(ValueError):
        RollingWindow(0)
