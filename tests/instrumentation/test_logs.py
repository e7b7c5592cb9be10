"""The obsbox logger: trace correlation, OTLP export (severity, attributes, exceptions), stdlib routing, redaction."""

from __future__ import annotations

import logging
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry import trace

import obsbox
from obsbox import logger
from obsbox.instrumentation.logs import InterceptHandler
from obsbox.instrumentation.setup import Telemetry
from obsbox.testing import OTLPReceiver


@pytest.fixture
def telemetry(otlp_receiver: OTLPReceiver, capsys: pytest.CaptureFixture[str]) -> Iterator[Telemetry]:
    t = obsbox.configure(service_name="logs-test", endpoint=otlp_receiver.endpoint, schedule_delay=0.05,
                         log_level="DEBUG")
    yield t
    t.shutdown()


def test_logger_works_before_configure() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from obsbox import logger; logger.info('before configure {}', 1)"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert "before configure 1" in out.stderr


def test_records_inside_a_span_carry_its_ids_and_are_exported(telemetry: Telemetry,
                                                             otlp_receiver: OTLPReceiver) -> None:
    seen: list[dict[str, object]] = []
    sink = logger.add(lambda m: seen.append(dict(m.record["extra"])), level="DEBUG")
    try:
        with trace.get_tracer("t").start_as_current_span("checkout") as span:
            logger.warning("payment slow", order_id=42, amount=9.5, retried=True, tags=["a", "b"])
        logger.info("outside")
    finally:
        logger.remove(sink)
    ctx = span.get_span_context()
    trace_hex, span_hex = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
    assert seen[0]["trace_id"] == trace_hex and seen[0]["span_id"] == span_hex
    assert re.fullmatch(r"[0-9a-f]{32}", str(seen[0]["trace_id"])) and "trace_id" not in seen[1]
    telemetry.force_flush()
    inside, outside = otlp_receiver.logs()
    assert inside.body == "payment slow"
    assert (inside.severity_number, inside.severity_text) == (13, "WARNING")
    assert (inside.trace_id, inside.span_id, inside.flags) == (trace_hex, span_hex, 1)
    attrs = inside.attributes
    assert attrs["order_id"] == 42 and attrs["amount"] == 9.5 and attrs["retried"] is True
    assert attrs["tags"] == ["a", "b"] and "trace_id" not in attrs
    assert attrs["code.function.name"] == "test_records_inside_a_span_carry_its_ids_and_are_exported"
    assert inside.resource["service.name"] == "logs-test" and inside.scope == "obsbox.logger"
    assert (outside.trace_id, outside.span_id, outside.severity_number) == ("", "", 9)


@pytest.mark.parametrize(("method", "number"), [("trace", 1), ("debug", 5), ("info", 9), ("success", 11),
                                                ("warning", 13), ("error", 17), ("critical", 21)])
def test_severity_numbers(otlp_receiver: OTLPReceiver, method: str, number: int) -> None:
    t = obsbox.configure(service_name="sev", endpoint=otlp_receiver.endpoint, schedule_delay=0.05,
                         log_level="TRACE")
    try:
        getattr(logger, method)("level check")
        t.force_flush()
        (record,) = [r for r in otlp_receiver.logs() if r.body == "level check"]
        assert record.severity_number == number and record.severity_text == method.upper()
    finally:
        t.shutdown()


def test_exceptions_keep_their_traceback(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    try:
        {}["missing"]  # noqa: B018
    except KeyError:
        logger.exception("lookup failed")
    telemetry.force_flush()
    (record,) = otlp_receiver.logs()
    assert record.severity_number == 17
    assert record.attributes["exception.type"] == "KeyError"
    assert record.attributes["exception.message"] == "'missing'"
    assert "Traceback" in record.attributes["exception.stacktrace"]
    assert "test_exceptions_keep_their_traceback" in record.attributes["exception.stacktrace"]


def test_secret_fields_are_redacted(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    logger.info("login", user="ann", password="hunter2", api_key="k", Authorization="Bearer x",
                session_cookie="c", access_token="t", client_secret="s")
    telemetry.force_flush()
    (record,) = otlp_receiver.logs()
    attrs = record.attributes
    assert attrs["user"] == "ann"
    for key in ("password", "api_key", "Authorization", "session_cookie", "access_token", "client_secret"):
        assert attrs[key] == "REDACTED", key
    assert "hunter2" not in repr(otlp_receiver.log_requests)


def test_stdlib_logging_takes_the_same_path(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    with trace.get_tracer("t").start_as_current_span("lib call") as span:
        logging.getLogger("somelib.client").warning("retrying %s in %ds", "GET /x", 2)
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    try:
        raise ValueError("stdlib boom")
    except ValueError:
        logging.getLogger("somelib").exception("failed")
    telemetry.force_flush()
    records = {r.body: r for r in otlp_receiver.logs()}
    lib = records["retrying GET /x in 2s"]
    assert lib.severity_number == 13 and lib.attributes["logger.name"] == "somelib.client"
    assert lib.trace_id == f"{span.get_span_context().trace_id:032x}"
    assert lib.attributes["code.function.name"] == "test_stdlib_logging_takes_the_same_path"
    assert records["Application startup complete."].attributes["logger.name"] == "uvicorn.error"
    assert records["failed"].attributes["exception.type"] == "ValueError"


def test_console_shows_a_short_trace_id(otlp_receiver: OTLPReceiver, capsys: pytest.CaptureFixture[str]) -> None:
    t = obsbox.configure(service_name="console", endpoint=otlp_receiver.endpoint)
    try:
        with trace.get_tracer("t").start_as_current_span("visible") as span:
            logger.info("readable line")
    finally:
        t.shutdown()
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "readable line" in x)
    assert f"[{span.get_span_context().trace_id:032x}"[:9] in line and "| INFO" in line


def test_console_can_be_switched_off(otlp_receiver: OTLPReceiver, capsys: pytest.CaptureFixture[str]) -> None:
    t = obsbox.configure(service_name="quiet", endpoint=otlp_receiver.endpoint, console=False, schedule_delay=0.05)
    try:
        logger.info("only exported")
        t.force_flush()
    finally:
        t.shutdown()
    assert "only exported" not in capsys.readouterr().err
    assert [r.body for r in otlp_receiver.logs()] == ["only exported"]


def test_configuring_twice_installs_each_sink_once(otlp_receiver: OTLPReceiver,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    first = obsbox.configure(service_name="once-a", endpoint=otlp_receiver.endpoint, schedule_delay=0.05)
    second = obsbox.configure(service_name="once-b", endpoint=otlp_receiver.endpoint, schedule_delay=0.05)
    try:
        assert not first.enabled
        logger.info("said once")
        logging.getLogger("lib").warning("stdlib said once")
        second.force_flush()
    finally:
        second.shutdown()
    err = capsys.readouterr().err
    assert err.count("said once") == 2 and err.count("stdlib said once") == 1
    assert sorted(r.body for r in otlp_receiver.logs()) == ["said once", "stdlib said once"]
    assert {r.resource["service.name"] for r in otlp_receiver.logs()} == {"once-b"}
    assert sum(isinstance(h, InterceptHandler) for h in logging.getLogger().handlers) == 1


def test_records_from_the_opentelemetry_logs_api_join_the_same_export(telemetry: Telemetry,
                                                                      otlp_receiver: OTLPReceiver) -> None:
    from opentelemetry._logs import SeverityNumber, get_logger

    with trace.get_tracer("t").start_as_current_span("api span") as span:
        get_logger("some.library").emit(body="via the logs API", severity_number=SeverityNumber.ERROR,
                                        severity_text="ERROR", attributes={"k": "v"})
    telemetry.force_flush()
    (record,) = otlp_receiver.logs()
    assert (record.body, record.severity_number, record.scope) == ("via the logs API", 17, "some.library")
    assert record.trace_id == f"{span.get_span_context().trace_id:032x}" and record.attributes == {"k": "v"}
    assert record.resource["service.name"] == "logs-test"


UVICORN_RUN_APP = """
import sys
import obsbox
from fastapi import FastAPI
obsbox.configure(service_name="uvicorn-run", endpoint=sys.argv[1])
app = FastAPI()
obsbox.instrument(app)

@app.get("/hello")
def hello() -> dict[str, bool]:
    return {"ok": True}

import uvicorn  # the usual `if __name__ == "__main__": uvicorn.run(app)`, after configure() ran
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=sys.argv[3] == "on")
"""


@pytest.mark.parametrize("access_log", ["on", "off"])
def test_uvicorn_run_after_configure_still_exports_the_servers_records(otlp_receiver: OTLPReceiver,
                                                                       access_log: str) -> None:
    # uvicorn.run() gives uvicorn's loggers handlers of their own after configure() routed them; the middleware
    # takes them back when the server starts the app, so uvicorn's records are exported like any other. An access
    # log the server was told to leave off (access_log=False, --no-access-log) stays off.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-c", UVICORN_RUN_APP, otlp_receiver.endpoint, str(port), access_log],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=5) as response:
                    assert response.read() == b'{"ok":true}'
                break
            except OSError:
                assert child.poll() is None and time.monotonic() < deadline, "the app did not start"
                time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        output = child.communicate(timeout=20)[0]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    records = {r.body: r for r in otlp_receiver.logs()}
    assert records["Application startup complete."].attributes["logger.name"] == "uvicorn.error", output
    access = [r for r in records.values() if r.attributes["logger.name"] == "uvicorn.access"]
    (span,) = otlp_receiver.spans("GET /hello")
    if access_log == "on":
        assert len(access) == 1 and '"GET /hello HTTP/1.1" 200' in str(access[0].body)
        assert access[0].trace_id == span.trace_id  # logged while the request's span was current
    else:
        assert access == [] and '"GET /hello' not in output  # neither exported nor printed
    assert "Application shutdown complete." in records  # and the shutdown flush carried the last ones


def test_an_access_log_switched_off_before_configure_stays_off(otlp_receiver: OTLPReceiver) -> None:
    # `uvicorn app:app --no-access-log` sets up its loggers (the access one emptied and not propagating) before
    # it imports the app, and so before the configure() in it.
    access = logging.getLogger("uvicorn.access")
    saved = access.handlers[:], access.propagate
    access.handlers, access.propagate = [], False
    try:
        t = obsbox.configure(service_name="quiet-access", endpoint=otlp_receiver.endpoint)
        try:
            assert not access.hasHandlers()  # what uvicorn checks before it formats an access line
            error = logging.getLogger("uvicorn.error")
            assert error.propagate and error.hasHandlers()  # the others are still routed
        finally:
            t.shutdown()
    finally:
        access.handlers, access.propagate = saved
