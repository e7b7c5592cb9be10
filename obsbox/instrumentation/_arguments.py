"""The keyword arguments of `obsbox.configure()`, one per setting (generated from settings.py; do not edit).

Regenerate with `python -m obsbox.instrumentation.settings --arguments > obsbox/instrumentation/_arguments.py`;
a test keeps it in sync with the declaration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from obsbox.instrumentation.sampling import SamplingRule


class SettingArguments(TypedDict, total=False):
    """Every setting as a keyword argument of `configure()`; None (or leaving it out) means not given."""

    service_name: str | None
    service_version: str | None
    environment: str | None
    resource_attributes: Mapping[str, str] | None
    disabled: bool | None
    endpoint: str | None
    traces_endpoint: str | None
    metrics_endpoint: str | None
    logs_endpoint: str | None
    protocol: str | None
    headers: Mapping[str, str] | None
    traces_headers: Mapping[str, str] | None
    metrics_headers: Mapping[str, str] | None
    logs_headers: Mapping[str, str] | None
    traces_exporter: str | None
    metrics_exporter: str | None
    logs_exporter: str | None
    export_logs: bool | None
    compression: str | None
    export_timeout: float | None
    max_queue_size: int | None
    max_export_batch_size: int | None
    schedule_delay: float | None
    batch_export_timeout: float | None
    metric_export_interval: float | None
    sampler: str | None
    sample_ratio: float | None
    sampling_rules: Sequence[SamplingRule | Mapping[str, Any]] | str | None
    metrics_port: int | None
    metrics_host: str | None
    pprof_endpoint: bool | None
    pprof_token: str | None
    console: bool | None
    log_level: str | None
    disabled_integrations: Sequence[str] | str | None
    slow_operation_threshold: float | None
    profiling: bool | None
    profiling_endpoint: str | None
    profiling_rate: int | None
    profiling_interval: float | None
