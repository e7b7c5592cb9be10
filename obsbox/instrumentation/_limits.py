"""How much one span may hold: the OpenTelemetry SDK's span limits, read from the same variables.

>>> limits = SpanLimits.from_env({"OTEL_SPAN_EVENT_COUNT_LIMIT": "10"})
>>> (limits.attributes, limits.events, limits.value_length)
(128, 10, None)

As in the SDK: at most 128 attributes per span, 128 events (the oldest go first), 128 links and 128 attributes per
event or link, unless OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT / OTEL_ATTRIBUTE_COUNT_LIMIT, OTEL_SPAN_EVENT_COUNT_LIMIT,
OTEL_SPAN_LINK_COUNT_LIMIT, OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT and OTEL_LINK_ATTRIBUTE_COUNT_LIMIT say otherwise;
string values (and the strings in lists) are cut to OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT /
OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT characters when one is set (no limit by default, as in the SDK). A new attribute
beyond the count pushes out the oldest (a key set again counts as new), as the SDK does. An invalid value gets one warning naming the
variable, and the default applies.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SpanLimits", "bounded", "current", "truncate"]

_log = logging.getLogger("obsbox")
DEFAULT_COUNT = 128


@dataclass(frozen=True)
class SpanLimits:
    attributes: int = DEFAULT_COUNT
    events: int = DEFAULT_COUNT
    links: int = DEFAULT_COUNT
    event_attributes: int = DEFAULT_COUNT
    link_attributes: int = DEFAULT_COUNT
    value_length: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SpanLimits:
        env = os.environ if environ is None else environ

        def read(names: tuple[str, ...], default: int | None) -> int | None:
            for name in names:  # the specific variable first, then the general one
                text = env.get(name, "").strip()
                if not text:
                    continue
                try:
                    value = int(text)
                    if value < 0:
                        raise ValueError
                except ValueError:
                    _log.warning("obsbox: ignoring %s=%r (expected a whole number of 0 or more); using %s", name,
                                 text[:40], "no limit" if default is None else default)
                    continue
                return value
            return default

        general = read(("OTEL_ATTRIBUTE_COUNT_LIMIT",), DEFAULT_COUNT)
        return cls(
            attributes=read(("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",), general) or 0,
            events=read(("OTEL_SPAN_EVENT_COUNT_LIMIT",), DEFAULT_COUNT) or 0,
            links=read(("OTEL_SPAN_LINK_COUNT_LIMIT",), DEFAULT_COUNT) or 0,
            event_attributes=read(("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",), general) or 0,
            link_attributes=read(("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",), general) or 0,
            value_length=read(("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"), None),
        )


current = SpanLimits()


def install(limits: SpanLimits) -> None:
    global current
    current = limits


def truncate(value: Any, length: int) -> Any:
    """`value` with its text cut to `length` characters (a str, or the str items of a list or tuple)."""
    if isinstance(value, str):
        return value[:length]
    if isinstance(value, (list, tuple)) and any(isinstance(v, str) and len(v) > length for v in value):
        return type(value)(v[:length] if isinstance(v, str) else v for v in value)
    return value


def bounded(attributes: Mapping[str, Any], count: int, length: int | None) -> dict[str, Any]:
    """At most `count` of `attributes` (the last ones, as the SDK keeps them; None values left out), text cut to
    `length`."""
    out: dict[str, Any] = {}
    if count <= 0:
        return out
    for key, value in attributes.items():
        if value is None:
            continue
        if key in out:
            del out[key]
        elif len(out) >= count:
            del out[next(iter(out))]
        out[key] = value if length is None else truncate(value, length)
    return out
