"""Per-route sampling rules: a ratio per route template and method, decided when a request's trace starts.

>>> from obsbox.instrumentation.sampling import SamplingRule, parse_rules
>>> parse_rules("GET /healthz=0.001, /v1/track/query=1, /admin/*=0")
(SamplingRule(route='/healthz', ratio=0.001, method='GET'), SamplingRule(route='/v1/track/query', ratio=1.0, method=None), SamplingRule(route='/admin/*', ratio=0.0, method=None))

`configure(sampling_rules=[SamplingRule("/healthz", 0.001, method="GET"), ...])` or
`OBSBOX_SAMPLING_RULES="GET /healthz=0.001,/v1/track/query=1"`. A rule matches a request whose route template
(as obsbox reports it in `http.route`: `/items/{item_id}` for FastAPI and Starlette, `/items/<int:item_id>` for
Flask, `/items/<int:pk>/` for Django) equals its `route` (`*` matches any run of characters) and, when it names one,
whose method is `method`. The first matching rule's ratio applies; a request no rule matches gets the `sampler`
setting's decision. What can and cannot be decided, and when: docs/configuration.md ("Sampling rules").
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import SpanContext

from obsbox.instrumentation._tracer import Sampler

_LOW64 = 0xFFFFFFFFFFFFFFFF
_METHOD = re.compile(r"[A-Za-z]+")


class InvalidRule(ValueError):
    """A rule that cannot be used; the message says why."""


@dataclass(frozen=True)
class SamplingRule:
    """Keep `ratio` (0..1) of the traces that start at requests to `route` (a template; `*` globs), with
    `method` when given (any method otherwise)."""

    route: str
    ratio: float
    method: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.route, str) or not self.route.strip():
            raise InvalidRule("a rule needs a route template")
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)) or not 0.0 <= self.ratio <= 1.0:
            raise InvalidRule(f"the ratio of {self.route} must be a number from 0 to 1")
        if self.method is not None and not (isinstance(self.method, str) and _METHOD.fullmatch(self.method)):
            raise InvalidRule(f"the method of {self.route} must be an HTTP method such as GET")
        object.__setattr__(self, "route", self.route.strip())
        object.__setattr__(self, "ratio", float(self.ratio))
        if self.method is not None:
            object.__setattr__(self, "method", self.method.upper())

    def matches(self, method: str | None, route: str) -> bool:
        if self.method is not None and method != self.method:
            return False
        return route == self.route or ("*" in self.route and fnmatch.fnmatchcase(route, self.route))


def parse_rules(value: Any) -> tuple[SamplingRule, ...]:
    """Rules from the environment form ("[METHOD ]ROUTE=RATIO,...") or from a sequence of SamplingRule or mappings
    with route, ratio and optionally method. Raises InvalidRule."""
    if isinstance(value, str):
        rules = []
        for item in value.split(","):
            if not item.strip():
                continue
            spec, sep, ratio_text = item.rpartition("=")
            if not sep or not spec.strip():
                raise InvalidRule("expected [METHOD ]ROUTE=RATIO entries separated by commas")
            method, _, route = spec.strip().partition(" ")
            if not route.strip():
                method, route = "", method
            try:
                ratio = float(ratio_text.strip())
            except ValueError:
                raise InvalidRule(f"the ratio of {route.strip()} must be a number from 0 to 1") from None
            rules.append(SamplingRule(route.strip(), ratio, method or None))
        return tuple(rules)
    if isinstance(value, SamplingRule):
        return (value,)
    if not isinstance(value, Sequence):
        raise InvalidRule("expected a list of SamplingRule or the text form [METHOD ]ROUTE=RATIO,...")
    out = []
    for rule in value:
        if isinstance(rule, SamplingRule):
            out.append(rule)
        elif isinstance(rule, Mapping):
            try:
                out.append(SamplingRule(rule["route"], rule["ratio"], rule.get("method")))
            except KeyError as missing:
                raise InvalidRule(f"a rule needs {missing}") from None
        else:
            raise InvalidRule("expected a list of SamplingRule or mappings with route, ratio and method")
    return tuple(out)


class RuleSampler(Sampler):
    """The rules in front of a standard sampler, for traces that start here; a parent's decision is followed.

    `sample` reads `http.request.method` and `http.route` from the attributes a span starts with. A trace a rule
    drops gives `None` rather than False: the span is then recorded without being sampled, and exported only if
    it ends as an error (see Tracer.start).
    """

    __slots__ = ("rules", "_bounds")

    reads_attributes = True

    def __init__(self, name: str, ratio: float, rules: Sequence[SamplingRule]) -> None:
        super().__init__(name, ratio)
        self.rules = tuple(rules)
        self.roots_on = False  # roots must be asked: their rule decides
        self._bounds: dict[tuple[str | None, str], int | None] = {}

    def _bound_for(self, method: str | None, route: str) -> int | None:
        key = (method, route)
        bound = self._bounds.get(key, -1)
        if bound == -1:
            rule = next((r for r in self.rules if r.matches(method, route)), None)
            bound = None if rule is None else round(rule.ratio * (1 << 64))
            if len(self._bounds) < 4096:  # route templates are few; never grow without bound
                self._bounds[key] = bound
        return bound

    def sample(self, parent: SpanContext | None, trace_id: int,
               attributes: Mapping[str, Any] | None = None) -> bool | None:
        if parent is not None:
            return bool(parent.trace_flags & 1)
        route = attributes.get("http.route") if attributes else None
        if isinstance(route, str):
            method = attributes.get("http.request.method") if attributes else None
            bound = self._bound_for(method if isinstance(method, str) else None, route)
            if bound is not None:
                return True if (trace_id & _LOW64) < bound else None
        return super().sample(None, trace_id)
