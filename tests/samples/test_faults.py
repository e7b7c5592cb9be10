"""Fault injection without processes: validation, the admin endpoint's rules, what each injection does."""

from __future__ import annotations

import json

import pytest

from obsbox.samples import SERVICES, faults
from obsbox.samples._chaos import FaultInjector


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"error_rate": -0.1}, "error_rate must be between 0 and 1"),
        ({"error_rate": 1.01}, "error_rate must be between 0 and 1"),
        ({"error_rate": True}, "error_rate must be a number"),
        ({"error_rate": "0.5"}, "error_rate must be a number"),
        ({"error_rate": float("nan")}, "error_rate must be a finite number"),
        ({"latency_ms": -1}, "latency_ms must be zero or more"),
        ({"jitter_ms": -5}, "jitter_ms must be zero or more"),
        ({"latency_ms": 120_000}, "latency_ms must be at most 60000"),
        ({"outage": "yes"}, "outage must be true or false"),
        ({"service": "billing"}, "unknown sample service 'billing'"),
    ],
)
def test_validate_rejects_bad_input_with_a_clear_message(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        faults.validate(**kwargs)  # type: ignore[arg-type]


def test_validate_normalises_and_keeps_only_what_was_given() -> None:
    assert faults.validate(error_rate=1, latency_ms=250, service="payments") == {"error_rate": 1.0,
                                                                                 "latency_ms": 250.0}
    assert faults.validate() == {}


def test_targets_are_urls_or_service_names() -> None:
    assert faults.base_url("payments") == f"http://127.0.0.1:{SERVICES['payments'].default_port}"
    assert faults.base_url("http://10.0.0.5:9000/") == "http://10.0.0.5:9000"
    with pytest.raises(ValueError, match="unknown sample service 'billing'.*gateway, orders, payments, inventory"):
        faults.base_url("billing")


def test_client_refuses_bad_input_before_sending_anything() -> None:
    # Port 9 (discard) on loopback: were anything sent, this would raise ConnectionError instead.
    with pytest.raises(ValueError, match="error_rate"):
        faults.set_faults("http://127.0.0.1:9", error_rate=2.0)
    with pytest.raises(ValueError, match="unknown sample service"):
        faults.set_faults("billing", error_rate=0.1)


def test_updates_merge_and_bad_updates_change_nothing() -> None:
    injector = FaultInjector("inventory")
    injector.update({"error_rate": 0.3})
    injector.update({"latency_ms": 100, "jitter_ms": 20})
    before = injector.faults
    assert before == faults.Faults(error_rate=0.3, latency_ms=100.0, jitter_ms=20.0, outage=False)
    for bad in ({"error_rate": 3}, {"latency_ms": 5, "error_rate": -1}, {"speed": 1}, [1, 2]):
        with pytest.raises(ValueError):
            injector.update(bad)
        assert injector.faults == before, bad
    assert injector.reset() == faults.Faults()


def test_admin_endpoint_answers_400_with_the_message_and_keeps_the_faults() -> None:
    injector = FaultInjector("payments")
    assert injector.admin("PUT", b'{"error_rate": 0.5}', "127.0.0.1") == (200, {
        "error_rate": 0.5, "latency_ms": 0.0, "jitter_ms": 0.0, "outage": False, "slow_query_ms": 0.0})
    status, body = injector.admin("PUT", b'{"error_rate": 1.5}', "127.0.0.1")
    assert status == 400 and "error_rate must be between 0 and 1" in body["error"]
    status, body = injector.admin("PUT", b"not json", "127.0.0.1")
    assert status == 400
    status, body = injector.admin("PUT", json.dumps({"latency": 5}).encode(), "::1")
    assert status == 400 and "unknown fault setting(s) latency" in body["error"]
    assert injector.admin("GET", b"", "127.0.0.1")[1]["error_rate"] == 0.5
    assert injector.admin("POST", b"", "127.0.0.1")[0] == 405
    assert injector.admin("DELETE", b"", "127.0.0.1") == (200, faults.Faults().to_json())


def test_admin_endpoint_is_loopback_only_unless_opted_in(monkeypatch: pytest.MonkeyPatch) -> None:
    injector = FaultInjector("orders")
    status, body = injector.admin("PUT", b'{"outage": true}', "192.168.1.20")
    assert status == 403 and "OBSBOX_SAMPLES_ADMIN_ANY_HOST" in body["error"]
    assert injector.admin("GET", b"", None)[0] == 403
    assert injector.faults.outage is False
    monkeypatch.setenv("OBSBOX_SAMPLES_ADMIN_ANY_HOST", "1")
    assert FaultInjector("orders").admin("PUT", b'{"outage": true}', "192.168.1.20")[0] == 200


def test_injections() -> None:
    injector = FaultInjector("inventory", seed=7)
    assert injector.draw() is None  # no faults: nothing to do, not even a draw

    injector.update({"error_rate": 0.25})
    draws = [injector.draw() for _ in range(4000)]
    failed = sum(1 for d in draws if d is not None and d.status == 503)
    assert 800 < failed < 1200  # ~25 %, the seed makes it exact run to run

    injector.update({"error_rate": 0.0, "latency_ms": 100, "jitter_ms": 40})
    delays = [d.delay_s for d in (injector.draw() for _ in range(500)) if d is not None]
    assert len(delays) == 500 and min(delays) >= 0.06 and max(delays) <= 0.14 and max(delays) - min(delays) > 0.05

    injector.update({"outage": True, "latency_ms": 0, "jitter_ms": 0})
    outage = injector.draw()
    assert outage is not None and outage.status == 503 and "outage" in outage.message


def test_admin_and_metrics_are_never_faulted() -> None:
    injector = FaultInjector("gateway")
    injector.update({"outage": True})
    assert injector.inject_sync("/admin/faults") is None
    assert injector.inject_sync("/metrics") is None
    failure = injector.inject_sync("/catalogue")
    assert failure is not None and failure.status == 503


def test_a_slow_query_is_for_the_service_with_a_database() -> None:
    from obsbox.stack.errors import UsageError

    assert FaultInjector("inventory").update({"slow_query_ms": 1500}).slow_query_ms == 1500.0
    status, body = FaultInjector("payments").admin("PUT", b'{"slow_query_ms": 1500}', "127.0.0.1")
    assert status == 400 and "only inventory has one" in body["error"]
    with pytest.raises(UsageError, match="slow_query_ms needs a database"):
        faults.chaos("payments", base="http://127.0.0.1:9", slow_query_ms=1500)  # refused before sending
    with pytest.raises(ValueError, match="slow_query_ms must be zero or more"):
        faults.validate(slow_query_ms=-1)
