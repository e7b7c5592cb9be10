"""Spans and log records the fast encoder refused, made encodable the way the OpenTelemetry SDK treats them.

>>> clean_attributes({1: "one", "kept": "yes\\udcff", "list": ["a\\ud800", None]})
{'kept': 'yes?', 'list': ['a?', None]}

The encoder is written for speed and takes what the API promises (str keys, str names, valid UTF-8). What it cannot
encode used to cost the whole span or record. Only then, off the common path, the item is copied here: attributes
with keys that are not strings are left out (as the SDK drops them), a missing name or event name becomes "" (what
the SDK's exporter sends for None), and text with lone surrogates has them replaced, so the item is exported.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

__all__ = ["clean_attributes", "clean_log", "clean_span", "clean_text"]


def clean_text(value: Any) -> str:
    """`value` as a str that encodes to UTF-8 (lone surrogates replaced; None is "")."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _clean_value(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, (bool, int, float, bytes)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_clean_value(v) for v in value]
    if isinstance(value, Mapping):
        return clean_attributes(value)
    return clean_text(value)


def clean_attributes(attributes: Mapping[Any, Any] | None) -> dict[str, Any]:
    """Attributes with str keys only (others left out, as the SDK does) and encodable text."""
    if not attributes:
        return {}
    return {clean_text(k): _clean_value(v) for k, v in attributes.items() if isinstance(k, str)}


_SPAN_FIELDS = ("name", "context", "parent", "kind", "start_time", "end_time", "shared", "attributes", "events",
                "links", "status_code", "status_message", "scope")
_LOG_FIELDS = ("time", "observed_time", "severity_number", "severity_text", "body", "attributes", "trace_id",
               "span_id", "flags", "event_name", "scope")


def _copy(item: Any, names: tuple[str, ...], **changes: Any) -> SimpleNamespace:
    """A shallow copy of what the encoder reads from `item` (see SpanData and LogData), with `changes`."""
    return SimpleNamespace(**{**{name: getattr(item, name) for name in names}, **changes})


def clean_span(span: Any) -> Any:
    """A copy of `span` that the span encoder can encode."""
    return _copy(
        span, _SPAN_FIELDS,
        name=clean_text(span.name),
        attributes=clean_attributes(span.attributes),
        events=[(clean_text(name), ts, clean_attributes(attrs)) for name, ts, attrs in span.events or ()],
        links=[(t, s, clean_text(state), clean_attributes(attrs), flags)
               for t, s, state, attrs, flags in span.links or ()],
        status_message=clean_text(span.status_message),
    )


def clean_log(record: Any) -> Any:
    """A copy of log `record` that the log encoder can encode."""
    return _copy(
        record, _LOG_FIELDS,
        severity_text=clean_text(record.severity_text),
        body=_clean_value(record.body),
        attributes=clean_attributes(record.attributes),
        event_name=clean_text(record.event_name),
    )
