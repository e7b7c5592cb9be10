"""OTLP protobuf encoding of spans and log records, written for speed.

The official encoder builds a protobuf object per span, attribute and value (≈65 µs per span). Here the wire format
is written directly as bytes, fields in field-number order exactly as protobuf serializes them, and the encodings
of repeated attributes (method, route, status code, ...) are cached. tests/instrumentation/test_encoder.py decodes
the output with opentelemetry-proto and compares it with the official encoder's, byte for byte.

>>> from obsbox.instrumentation._encode import encode_resource
>>> encode_resource({"service.name": "orders"}).hex()
'0a180a0c736572766963652e6e616d6512080a066f7264657273'

Field numbers are those of opentelemetry/proto/{common,resource,trace,logs}/v1/*.proto and the collector's
Export*ServiceRequest messages.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from opentelemetry.trace import SpanContext
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from obsbox.instrumentation._interned import Interned

_pack_q = struct.Struct("<Q").pack  # fixed64
_pack_i = struct.Struct("<I").pack  # fixed32
_pack_d = struct.Struct("<d").pack  # double

_SMALL = [bytes((i,)) for i in range(128)]


def varint(n: int) -> bytes:
    if n < 128:
        if n >= 0:
            return _SMALL[n]
        n += 1 << 64  # int64 negatives: ten-byte two's complement
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_bytes(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (tag already encoded)."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 128 else _lengths[n]) + payload


# Lengths of encoded spans and batches repeat: their varints are built once (bounded, see Interned).
_lengths: Interned[int, bytes] = Interned(varint, limit=4096)


def _tag(field: int, wire: int) -> bytes:
    return varint((field << 3) | wire)


# --- common.proto -----------------------------------------------------------------------------------------------
# AnyValue: string_value=1, bool_value=2, int_value=3, double_value=4, array_value=5, kvlist_value=6, bytes_value=7
_AV_STR, _AV_BOOL, _AV_INT, _AV_DOUBLE = _tag(1, 2), _tag(2, 0), _tag(3, 0), _tag(4, 1)
_AV_ARRAY, _AV_KVLIST, _AV_BYTES = _tag(5, 2), _tag(6, 2), _tag(7, 2)
_KV_KEY, _KV_VALUE = _tag(1, 2), _tag(2, 2)  # KeyValue
_REPEATED_1 = _tag(1, 2)  # ArrayValue.values, KeyValueList.values


def any_value(value: Any) -> bytes:
    """An AnyValue message (without its own tag). Unknown types are sent as their str()."""
    if isinstance(value, str):
        return field_bytes(_AV_STR, value.encode("utf-8", "replace"))
    if isinstance(value, bool):
        return _AV_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            return _AV_INT + varint(value)
        return field_bytes(_AV_STR, str(value).encode())
    if isinstance(value, float):
        return _AV_DOUBLE + _pack_d(value)
    if isinstance(value, (bytes, bytearray)):
        return field_bytes(_AV_BYTES, bytes(value))
    if isinstance(value, (list, tuple)):
        return field_bytes(_AV_ARRAY, b"".join(field_bytes(_REPEATED_1, any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return field_bytes(_AV_KVLIST, b"".join(field_bytes(_REPEATED_1, key_value(str(k), v))
                                                for k, v in value.items()))
    if value is None:
        return b""
    return field_bytes(_AV_STR, str(value).encode("utf-8", "replace"))


def key_value(key: str, value: Any) -> bytes:
    return field_bytes(_KV_KEY, key.encode("utf-8", "replace")) + field_bytes(_KV_VALUE, any_value(value))


# Attributes repeat (method, route, status code): their encoded fields are cached per field tag and (key, value)
# item. When every value is a str or an int (not a bool: True == 1), the whole attribute set is looked up with `map`
# over its items, without a line of Python per attribute; other sets take the general path, which keeps
# 1, True and 1.0 (equal as dict keys) apart. Values partly come from requests (url.path), so tables are bounded.
_CACHE_LIMIT = 4096
# Only encodings up to this size are kept (a 100 kB attribute is encoded each time): each table holds at most
# _CACHE_LIMIT x (_CACHED_BYTES + its key) bytes, a few MB, whatever the values.
_CACHED_BYTES = 512
_PLAIN = frozenset((str, int))


def _item_cache(tag: bytes) -> Interned[tuple[str, Any], bytes]:
    return Interned(lambda item: field_bytes(tag, key_value(*item)), limit=_CACHE_LIMIT, size=len,
                    max_size=_CACHED_BYTES)


_CACHES: Interned[bytes, Interned[tuple[str, Any], bytes]] = Interned(_item_cache)  # one per tag; tags are few


def attributes(tag: bytes, attrs: Mapping[str, Any]) -> list[bytes]:
    """The repeated KeyValue field `tag` for every attribute (None values are skipped)."""
    cache = _CACHES[tag]
    if _PLAIN.issuperset(map(type, attrs.values())):
        return list(map(cache.__getitem__, attrs.items()))
    out = []
    for item in attrs.items():
        value = item[1]
        vt = type(value)
        if vt is str or vt is int:
            out.append(cache[item])
        elif value is not None:
            out.append(field_bytes(tag, key_value(*item)))
    return out


class SharedAttributes(dict[str, Any]):
    """Span attributes many spans carry alike (a request's method, host and client; its path; its route and status),
    with their span-attribute fields encoded once.

    >>> block = SharedAttributes({"http.request.method": "GET", "server.port": 8080})
    >>> block.encoded == b"".join(attributes(_S_ATTR, block))
    True

    The request path keeps these in bounded tables and hands the same block to every span it fits (a span lists
    them in `shared`, see `encode_span`), so a request's attributes are neither built nor encoded per request.
    Shared: never change one. None values are left out, as everywhere else.
    """

    __slots__ = ("encoded",)

    def __init__(self, attrs: Mapping[str, Any]) -> None:
        super().__init__((k, v) for k, v in attrs.items() if v is not None)
        # Encoded without the per-item cache: blocks are made once, and some (paths) are many.
        self.encoded = b"".join(field_bytes(_S_ATTR, key_value(k, v)) for k, v in self.items())


# --- resource.proto / InstrumentationScope ----------------------------------------------------------------------
_RESOURCE_ATTR = _tag(1, 2)


def encode_resource(attrs: Mapping[str, Any]) -> bytes:
    """A Resource message (without its own tag)."""
    return b"".join(field_bytes(_RESOURCE_ATTR, key_value(k, v)) for k, v in attrs.items() if v is not None)


_SCOPE_NAME, _SCOPE_VERSION, _SCOPE_ATTR = _tag(1, 2), _tag(2, 2), _tag(3, 2)


def encode_scope(name: str, version: str | None = None, attrs: Mapping[str, Any] | None = None) -> bytes:
    """An InstrumentationScope message (without its own tag)."""
    out = field_bytes(_SCOPE_NAME, name.encode("utf-8", "replace")) if name else b""
    if version:
        out += field_bytes(_SCOPE_VERSION, version.encode("utf-8", "replace"))
    if attrs:
        out += b"".join(field_bytes(_SCOPE_ATTR, key_value(k, v)) for k, v in attrs.items())
    return out


# --- trace.proto ------------------------------------------------------------------------------------------------
class SpanData(Protocol):
    """What the span encoder reads (obsbox's lean span provides it)."""

    name: str
    context: SpanContext  # the span's own: trace id, span id, trace state
    parent: SpanContext | None  # the parent's: span id, is_remote
    kind: int  # OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer
    start_time: int
    end_time: int
    shared: Sequence[SharedAttributes] | None  # attributes that come first, already encoded
    attributes: Mapping[str, Any] | None  # the span's other attributes
    events: Sequence[tuple[str, int, Mapping[str, Any]]] | None
    links: Sequence[tuple[int, int, str, Mapping[str, Any], int]] | None  # trace, span, state, attributes, flags
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    scope: bytes  # encoded InstrumentationScope


_S_TRACE_ID, _S_SPAN_ID, _S_STATE, _S_PARENT = b"\x0a\x10", b"\x12\x08", _tag(3, 2), b"\x22\x08"
_S_NAME, _S_KIND, _S_START, _S_END = _tag(5, 2), _tag(6, 0), _tag(7, 1), _tag(8, 1)
_S_ATTR, _S_EVENT, _S_LINK, _S_STATUS, _S_FLAGS = _tag(9, 2), _tag(11, 2), _tag(13, 2), _tag(15, 2), _tag(16, 5)
_E_TIME, _E_NAME, _E_ATTR = _tag(1, 1), _tag(2, 2), _tag(3, 2)
_L_TRACE, _L_SPAN, _L_STATE, _L_ATTR, _L_FLAGS = b"\x0a\x10", b"\x12\x08", _tag(3, 2), _tag(4, 2), _tag(6, 5)
_ST_MESSAGE, _ST_CODE = _tag(2, 2), _tag(3, 0)
# SpanFlags: the parent's is_remote is known (0x100), and it is remote (0x200) — as the official encoder sets them.
_FLAGS_LOCAL = _S_FLAGS + _pack_i(0x100)
_FLAGS_REMOTE = _S_FLAGS + _pack_i(0x300)
_STATUS_UNSET = field_bytes(_S_STATUS, b"")


# Span names repeat ("GET /items/{item_id}"): their encoded field is cached.
_NAMES: Interned[str, bytes] = Interned(
    lambda name: field_bytes(_S_NAME, name.encode("utf-8", "replace")), limit=_CACHE_LIMIT, size=len,
    max_size=_CACHED_BYTES,
)


# Fixed-size runs of fields packed in one call: trace_id and span_id (ids are big-endian bytes on the wire), the
# parent span id, and kind, start and end time (a one-byte varint, then fixed64 little-endian) with their tags.
_pack_ids = struct.Struct(">2sQQ2sQ").pack
_pack_ids_parent = struct.Struct(">2sQQ2sQ2sQ").pack
_pack_parent = struct.Struct(">2sQ").pack
_pack_times = struct.Struct("<BBBQBQ").pack
_S_KIND_TAG, _S_START_TAG, _S_END_TAG = _S_KIND[0], _S_START[0], _S_END[0]
_LOW64 = (1 << 64) - 1
# What ends almost every span: status unset, then the flags (the parent is local or none, or remote).
_TAIL_LOCAL = _STATUS_UNSET + _FLAGS_LOCAL
_TAIL_REMOTE = _STATUS_UNSET + _FLAGS_REMOTE
_encoded_of = operator.attrgetter("encoded")


def encode_span(span: SpanData) -> bytes:
    """A Span message (without its own tag)."""
    # SpanContext is a tuple: (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid).
    context = span.context
    trace_id = context[0]
    parent = span.parent
    state = context[4]
    has_state = state is not DEFAULT_TRACE_STATE and bool(state)
    if parent is not None and not has_state:  # the ids and the parent id in one run
        parts = [_pack_ids_parent(_S_TRACE_ID, trace_id >> 64, trace_id & _LOW64, _S_SPAN_ID, context[1],
                                  _S_PARENT, parent[1])]
    else:  # trace_state (3), if any, goes between the span id and the parent id
        parts = [_pack_ids(_S_TRACE_ID, trace_id >> 64, trace_id & _LOW64, _S_SPAN_ID, context[1])]
        if has_state:
            parts.append(field_bytes(_S_STATE, state.to_header().encode()))
        if parent is not None:
            parts.append(_pack_parent(_S_PARENT, parent[1]))
    parts += (
        _NAMES[span.name],
        _pack_times(_S_KIND_TAG, span.kind, _S_START_TAG, span.start_time, _S_END_TAG, span.end_time),
    )
    if span.shared:
        parts += map(_encoded_of, span.shared)
    if span.attributes:
        parts += attributes(_S_ATTR, span.attributes)
    remote = parent is not None and parent[2]
    if span.events or span.links or span.status_code or span.status_message:
        parts += (_rare_fields(span), _FLAGS_REMOTE if remote else _FLAGS_LOCAL)
    else:
        parts.append(_TAIL_REMOTE if remote else _TAIL_LOCAL)
    return b"".join(parts)


def _rare_fields(span: SpanData) -> bytes:
    """Events, links and the status (in field order), for spans that have any of them or a status set."""
    parts = []
    if span.events:
        for event_name, ts, attrs in span.events:
            event = _E_TIME + _pack_q(ts) + field_bytes(_E_NAME, event_name.encode("utf-8", "replace"))
            if attrs:
                event += b"".join(field_bytes(_E_ATTR, key_value(k, v)) for k, v in attrs.items() if v is not None)
            parts.append(field_bytes(_S_EVENT, event))
    if span.links:
        for trace_id, span_id, state, attrs, flags in span.links:
            link = _L_TRACE + trace_id.to_bytes(16, "big") + _L_SPAN + span_id.to_bytes(8, "big")
            if state:
                link += field_bytes(_L_STATE, state.encode())
            if attrs:
                link += b"".join(field_bytes(_L_ATTR, key_value(k, v)) for k, v in attrs.items() if v is not None)
            link += _L_FLAGS + _pack_i(flags)
            parts.append(field_bytes(_S_LINK, link))
    if span.status_code or span.status_message:
        status = field_bytes(_ST_MESSAGE, span.status_message.encode()) if span.status_message else b""
        if span.status_code:
            status += _ST_CODE + _SMALL[span.status_code]
        parts.append(field_bytes(_S_STATUS, status))
    else:
        parts.append(_STATUS_UNSET)
    return b"".join(parts)


_REQ_RESOURCE = _tag(1, 2)  # Export*ServiceRequest.resource_{spans,logs}
_RS_RESOURCE, _RS_SCOPES = _tag(1, 2), _tag(2, 2)  # Resource{Spans,Logs}.resource, .scope_{spans,logs}
_SS_SCOPE, _SS_ITEMS = _tag(1, 2), _tag(2, 2)  # Scope{Spans,Logs}.scope, .spans / .log_records


def _request(resource: bytes, by_scope: Mapping[bytes, list[bytes]]) -> bytes:
    scopes = []
    for scope, items in by_scope.items():
        body = field_bytes(_SS_SCOPE, scope)
        body += b"".join(field_bytes(_SS_ITEMS, item) for item in items)
        scopes.append(field_bytes(_RS_SCOPES, body))
    return field_bytes(_REQ_RESOURCE, field_bytes(_RS_RESOURCE, resource) + b"".join(scopes))


def encode_batch(resource: bytes, items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """An ExportTraceServiceRequest or ExportLogsServiceRequest (their layouts are the same) from items already
    encoded: (encoded InstrumentationScope, `encode_span()` or `encode_log()` output) pairs, grouped by scope."""
    by_scope: dict[bytes, list[bytes]] = {}
    for scope, encoded in items:
        group = by_scope.get(scope)
        if group is None:
            by_scope[scope] = [encoded]
        else:
            group.append(encoded)
    return _request(resource, by_scope)


def encode_spans_request(resource: bytes, spans: Iterable[SpanData]) -> bytes:
    """An ExportTraceServiceRequest: one resource, spans grouped by instrumentation scope."""
    return encode_batch(resource, ((span.scope, encode_span(span)) for span in spans))


# --- logs.proto -------------------------------------------------------------------------------------------------
class LogData(Protocol):
    """What the log encoder reads."""

    time: int
    observed_time: int
    severity_number: int
    severity_text: str
    body: Any
    attributes: Mapping[str, Any] | None
    trace_id: int
    span_id: int
    flags: int
    event_name: str
    scope: bytes


_LR_TIME, _LR_SEV, _LR_SEV_TEXT, _LR_BODY = _tag(1, 1), _tag(2, 0), _tag(3, 2), _tag(5, 2)
_LR_ATTR, _LR_FLAGS, _LR_TRACE, _LR_SPAN = _tag(6, 2), _tag(8, 5), b"\x4a\x10", b"\x52\x08"
_LR_OBSERVED, _LR_EVENT = _tag(11, 1), _tag(12, 2)


def encode_log(record: LogData) -> bytes:
    """A LogRecord message (without its own tag)."""
    parts = [_LR_TIME, _pack_q(record.time)] if record.time else []
    if record.severity_number:
        parts += (_LR_SEV, varint(record.severity_number))
    if record.severity_text:
        parts.append(field_bytes(_LR_SEV_TEXT, record.severity_text.encode()))
    if record.body is not None:
        parts.append(field_bytes(_LR_BODY, any_value(record.body)))
    if record.attributes:
        parts += attributes(_LR_ATTR, record.attributes)
    if record.flags:
        parts += (_LR_FLAGS, _pack_i(record.flags))
    if record.trace_id:
        parts += (_LR_TRACE, record.trace_id.to_bytes(16, "big"))
    if record.span_id:
        parts += (_LR_SPAN, record.span_id.to_bytes(8, "big"))
    if record.observed_time:
        parts += (_LR_OBSERVED, _pack_q(record.observed_time))
    if record.event_name:
        parts.append(field_bytes(_LR_EVENT, record.event_name.encode()))
    return b"".join(parts)


def encode_logs_request(resource: bytes, records: Iterable[LogData]) -> bytes:
    """An ExportLogsServiceRequest: one resource, records grouped by instrumentation scope."""
    return encode_batch(resource, ((record.scope, encode_log(record)) for record in records))
