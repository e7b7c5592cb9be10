"""Settings: precedence argument > OBSBOX_* > OTEL_* > default; invalid values warn once and fall back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import obsbox
from obsbox.instrumentation.settings import SETTINGS, render_arguments, render_markdown, resolve

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"
ARGUMENTS = Path(__file__).parents[2] / "obsbox" / "instrumentation" / "_arguments.py"


def test_defaults() -> None:
    s = resolve({}, environ={})
    assert s.service_name == "unknown_service:python"
    assert s.export.protocol == "http/protobuf" and s.export.otlp_endpoint == "http://127.0.0.1:4318"
    assert s.sampling.sampler == "parentbased_always_on" and s.sampling.sample_ratio == 1.0
    assert s.disabled is False and s.pull.metrics_port is None and s.pull.metrics_host == "127.0.0.1"
    assert s.batching.max_queue_size == 2048 and s.batching.max_export_batch_size == 512


def test_precedence_argument_then_obsbox_then_otel() -> None:
    env = {"OBSBOX_SERVICE_NAME": "from-obsbox", "OTEL_SERVICE_NAME": "from-otel"}
    assert resolve({"service_name": "from-arg"}, environ=env).service_name == "from-arg"
    assert resolve({}, environ=env).service_name == "from-obsbox"
    assert resolve({}, environ={"OTEL_SERVICE_NAME": "from-otel"}).service_name == "from-otel"


def test_standard_otel_variables() -> None:
    s = resolve({}, environ={
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%20ecret,x-tenant=a",
        "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=shop,team=core",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
        "OTEL_SDK_DISABLED": "TRUE",
        "OTEL_METRIC_EXPORT_INTERVAL": "5000",
        "OTEL_BSP_MAX_QUEUE_SIZE": "100",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",
        "OTEL_BSP_SCHEDULE_DELAY": "250",
        "OTEL_BSP_EXPORT_TIMEOUT": "2000",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1500",
    })
    assert s.export.endpoint == "http://collector:4318"
    assert s.export.headers == {"api-key": "s ecret", "x-tenant": "a"}
    assert s.resource_attributes == {"service.namespace": "shop", "team": "core"}
    assert (s.sampling.sampler, s.sampling.sample_ratio, s.disabled) == ("traceidratio", 0.1, True)
    assert s.batching.metric_export_interval == 5.0 and s.batching.schedule_delay == 0.25
    assert s.batching.batch_export_timeout == 2.0 and s.export.export_timeout == 1.5
    assert (s.batching.max_queue_size, s.batching.max_export_batch_size) == (100, 10)


def test_arguments_are_seconds_and_typed() -> None:
    s = resolve({"metric_export_interval": 2, "metrics_port": 0, "headers": {"a": "b"}, "console": False}, environ={})
    assert s.batching.metric_export_interval == 2.0 and s.pull.metrics_port == 0 and s.export.headers == {"a": "b"} and not s.logs.console


def test_grpc_default_port() -> None:
    assert resolve({"protocol": "grpc"}, environ={}).export.otlp_endpoint == "http://127.0.0.1:4317"


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected", "fallback_text"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon", "protocol", "http/protobuf", "default 'http/protobuf'"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url", "endpoint", None, "default None"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://host:99999", "endpoint", None, "default None"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5", "sample_ratio", 1.0, "default 1.0"),
        ("OTEL_TRACES_SAMPLER_ARG", "half", "sample_ratio", 1.0, "default 1.0"),
        ("OTEL_TRACES_SAMPLER", "sometimes", "sampler", "parentbased_always_on", "default"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "lots", "max_queue_size", 2048, "default 2048"),
        ("OBSBOX_METRICS_PORT", "http", "metrics_port", None, "default None"),
        ("OTEL_SDK_DISABLED", "maybe", "disabled", False, "default False"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "-5", "metric_export_interval", 15.0, "default 15.0"),
        ("OTEL_TRACES_EXPORTER", "console", "traces_exporter", "otlp", "default 'otlp'"),
        ("OTEL_METRICS_EXPORTER", "prometheus", "metrics_exporter", "otlp", "default 'otlp'"),
        ("OTEL_LOGS_EXPORTER", "none,console", "logs_exporter", "otlp", "default 'otlp'"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318", "traces_endpoint", None, "default None"),
        ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "no-equals-sign", "logs_headers", None, "default None"),
    ],
)
def test_invalid_values_warn_once_and_fall_back(
    caplog: pytest.LogCaptureFixture, variable: str, value: str, field: str, expected: object, fallback_text: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        s = resolve({}, environ={variable: value})
    assert s.value(field) == expected
    warnings = [r.getMessage() for r in caplog.records if r.name == "obsbox"]
    assert len(warnings) == 1, warnings
    assert variable in warnings[0] and fallback_text in warnings[0]


def test_invalid_obsbox_value_falls_back_to_the_otel_variable(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        s = resolve({}, environ={"OBSBOX_PROTOCOL": "smoke", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert s.export.protocol == "grpc"
    (message,) = [r.getMessage() for r in caplog.records if r.name == "obsbox"]
    assert "OBSBOX_PROTOCOL" in message and "using OTEL_EXPORTER_OTLP_PROTOCOL" in message


def test_invalid_argument_warns_instead_of_raising(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        s = resolve({"sample_ratio": 7}, environ={})
    assert s.sampling.sample_ratio == 1.0 and "sample_ratio argument" in caplog.text


def test_every_setting_has_an_environment_variable_and_a_doc() -> None:
    for s in SETTINGS:
        assert s.obsbox_env == "OBSBOX_" + s.name.upper()
        assert s.doc.endswith(".")


def test_configuration_doc_is_generated_from_the_table() -> None:
    assert DOC.read_text() == render_markdown(), "regenerate: python -m obsbox.instrumentation.settings > " + str(DOC)
    for s in SETTINGS:
        assert f"`{s.name}`" in DOC.read_text()


def test_configure_keywords_are_generated_from_the_declaration() -> None:
    assert ARGUMENTS.read_text() == render_arguments(), (
        "regenerate: python -m obsbox.instrumentation.settings --arguments > " + str(ARGUMENTS))


def test_a_setting_is_read_by_its_one_flat_name_everywhere() -> None:
    # keyword, OBSBOX_* variable and the grouped value all come from the one declaration
    for s in SETTINGS:
        assert resolve({}, environ={}).value(s.name) == s.default
    env = {"OBSBOX_SCHEDULE_DELAY": "250", "OBSBOX_METRICS_HOST": "0.0.0.0"}
    settings = resolve({"log_level": "debug"}, environ=env)
    assert settings.batching.schedule_delay == 0.25 and settings.pull.metrics_host == "0.0.0.0"
    assert settings.logs.log_level == "DEBUG"


def test_a_misspelt_keyword_raises_as_python_does() -> None:
    with pytest.raises(TypeError, match="servce_name"):
        obsbox.configure(servce_name="orders")  # type: ignore[call-arg]


@pytest.mark.parametrize(("value", "expected"), [
    ("none", "none"), ("NONE", "none"), (" otlp ", "otlp"), ("otlp,none", "otlp"), ("none,none", "none"),
])
def test_exporter_variables_take_the_spec_values(value: str, expected: str) -> None:
    for signal in ("traces", "metrics", "logs"):
        s = resolve({}, environ={f"OTEL_{signal.upper()}_EXPORTER": value})
        assert getattr(s.export, f"{signal}_exporter") == expected
        assert s.export.exports(signal) is (expected == "otlp")


def test_exporters_default_to_otlp_and_follow_the_precedence() -> None:
    assert {resolve({}, environ={}).export.exports(x) for x in ("traces", "metrics", "logs")} == {True}
    env = {"OBSBOX_METRICS_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none"}
    assert resolve({}, environ=env).export.metrics_exporter == "otlp"
    assert resolve({}, environ={"OTEL_METRICS_EXPORTER": "none"}).export.metrics_exporter == "none"
    assert resolve({"metrics_exporter": "none"}, environ=env).export.metrics_exporter == "none"
    # export_logs=False keeps meaning what it always did
    assert resolve({"export_logs": False}, environ={}).export.exports("logs") is False


def test_invalid_obsbox_exporter_falls_back_to_the_otel_variable(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        s = resolve({}, environ={"OBSBOX_LOGS_EXPORTER": "console", "OTEL_LOGS_EXPORTER": "none"})
    assert s.export.logs_exporter == "none"
    (message,) = [r.getMessage() for r in caplog.records if r.name == "obsbox"]
    assert "OBSBOX_LOGS_EXPORTER" in message and "console is not supported" in message
    assert "using OTEL_LOGS_EXPORTER" in message


def test_per_signal_endpoints_are_used_as_is_and_the_common_one_gets_a_path_appended() -> None:
    s = resolve({}, environ={
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example:443/custom/path",
        "OTEL_EXPORTER_OTLP_HEADERS": "a=1",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=2",
    })
    assert s.export.signal_endpoint("traces") == ("https://traces.example:443/custom/path", True)
    assert s.export.signal_endpoint("metrics") == ("http://collector:4318", False)
    assert s.export.signal_endpoint("logs") == ("http://collector:4318", False)
    # signal headers replace the common ones for that signal (as the OpenTelemetry SDK does)
    assert s.export.signal_headers("traces") == {"b": "2"} and s.export.signal_headers("metrics") == {"a": "1"}


def test_the_settings_repr_leaves_out_every_credential_and_shows_the_rest() -> None:
    # Export headers carry API keys and bearer tokens; the pprof token guards the profiling endpoint. A repr lands
    # in logs, tracebacks and bug reports, so none of them is in it, whether set by argument or by env.
    s = resolve({"headers": {"authorization": "Bearer arg-secret-1"}, "pprof_token": "tok-secret-2",
                 "service_name": "orders"},
                environ={"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-api-key=env-secret-3",
                         "OBSBOX_METRICS_HEADERS": "x-api-key=env-secret-4",
                         "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "x-api-key=env-secret-5"})
    assert s.export.headers == {"authorization": "Bearer arg-secret-1"}  # still there to be sent
    assert s.export.signal_headers("traces") == {"x-api-key": "env-secret-3"}
    assert s.export.signal_headers("metrics") == {"x-api-key": "env-secret-4"}
    text = repr(s)
    for secret in ("arg-secret-1", "tok-secret-2", "env-secret-3", "env-secret-4", "env-secret-5"):
        assert secret not in text, text
    assert "service_name='orders'" in text and "protocol='http/protobuf'" in text  # the rest is still shown
