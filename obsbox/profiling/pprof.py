"""pprof profiles written by hand: the gzip-compressed `perftools.profiles.Profile` message `go tool pprof` reads.

>>> builder = ProfileBuilder([("samples", "count"), ("cpu", "nanoseconds")], period_type=("cpu", "nanoseconds"),
...                          period=10_000_000, start_ns=1_700_000_000_000_000_000, duration_ns=2_000_000_000)
>>> builder.add([("spin", "app.py", 12), ("main", "app.py", 30)], [1, 10_000_000], {"span_id": "00f067aa0ba902b7"})
>>> builder.add([("spin", "app.py", 12), ("main", "app.py", 30)], [1, 10_000_000], {"span_id": "00f067aa0ba902b7"})
>>> len(builder)     # the same stack and labels: one sample, values summed
1
>>> data = builder.encode()   # write it to a file: `go tool pprof -top profile.pb.gz`

Strings, functions (name + file) and locations (function + line) are interned; frames are given leaf first, as
pprof's Sample.location_id lists them. Every location has exactly one Line (Python has no inlining) and belongs to
one Mapping that says functions, file names and line numbers are present, so pprof does not try to symbolize
addresses. Field numbers are those of github.com/google/pprof proto/profile.proto; tests/profiling/test_pprof.py
reads the output with the real `go tool pprof`.

A builder is not thread-safe: one owner adds to it and encodes it.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence

from obsbox.instrumentation._encode import field_bytes, varint

__all__ = ["ProfileBuilder"]


def _tag(field: int, wire: int) -> bytes:
    return varint((field << 3) | wire)


# Profile
_P_SAMPLE_TYPE, _P_SAMPLE, _P_MAPPING, _P_LOCATION = _tag(1, 2), _tag(2, 2), _tag(3, 2), _tag(4, 2)
_P_FUNCTION, _P_STRING = _tag(5, 2), _tag(6, 2)
_P_TIME, _P_DURATION, _P_PERIOD_TYPE, _P_PERIOD = _tag(9, 0), _tag(10, 0), _tag(11, 2), _tag(12, 0)
# ValueType: type=1, unit=2 (string indices)
_VT_TYPE, _VT_UNIT = _tag(1, 0), _tag(2, 0)
# Sample: location_id=1 (packed uint64), value=2 (packed int64), label=3
_S_LOCATION, _S_VALUE, _S_LABEL = _tag(1, 2), _tag(2, 2), _tag(3, 2)
# Label: key=1, str=2 (string indices)
_LB_KEY, _LB_STR = _tag(1, 0), _tag(2, 0)
# Mapping: id=1, filename=5, has_functions=7, has_filenames=8, has_line_numbers=9
_M_ID, _M_FILENAME = _tag(1, 0), _tag(5, 0)
_M_SYMBOLIZED = _tag(7, 0) + b"\x01" + _tag(8, 0) + b"\x01" + _tag(9, 0) + b"\x01"
# Location: id=1, mapping_id=2, line=4; Line: function_id=1, line=2
_L_ID, _L_MAPPING, _L_LINE = _tag(1, 0), _tag(2, 0), _tag(4, 2)
_LN_FUNCTION, _LN_LINE = _tag(1, 0), _tag(2, 0)
# Function: id=1, name=2, filename=4 (string indices). system_name (3) stays unset: pprof takes a name equal to its
# system name for a mangled C++ symbol and strips "<...>" from it, which turns Python's <module>, <lambda> and
# <listcomp> into nothing.
_F_ID, _F_NAME, _F_FILENAME = _tag(1, 0), _tag(2, 0), _tag(4, 0)

_MAPPING_ID = 1


def _int_field(tag: bytes, value: int) -> bytes:
    """A varint field, left out when zero (proto3 default)."""
    return tag + varint(value) if value else b""


def _packed(tag: bytes, values: Sequence[int]) -> bytes:
    return field_bytes(tag, b"".join(map(varint, values))) if values else b""


class ProfileBuilder:
    """Samples of one profile, aggregated by stack and labels; `encode()` gives the gzip-compressed pprof bytes.

    sample_types: (type, unit) per value, e.g. [("samples", "count"), ("cpu", "nanoseconds")]; the last one is
    what pprof shows by default. period_type/period: what one sample stands for, e.g. ("cpu", "nanoseconds"),
    10_000_000. start_ns: when collection began (ns since the epoch); duration_ns: how long it ran.
    """

    def __init__(self, sample_types: Sequence[tuple[str, str]], *, period_type: tuple[str, str],
                 period: int, start_ns: int, duration_ns: int = 0) -> None:
        if not sample_types:
            raise ValueError("a profile needs at least one sample type")
        self._strings: dict[str, int] = {"": 0}
        self._functions: dict[tuple[str, str], int] = {}
        self._locations: dict[tuple[int, int], int] = {}  # (function id, line) -> location id
        self._samples: dict[tuple[tuple[int, ...], tuple[tuple[int, int], ...]], list[int]] = {}
        self._sample_types = [(self._string(t), self._string(u)) for t, u in sample_types]
        self._period_type = (self._string(period_type[0]), self._string(period_type[1]))
        self._mapping_file = self._string("python")
        self._period = int(period)
        self.start_ns = int(start_ns)
        self.duration_ns = int(duration_ns)

    def __len__(self) -> int:
        """The number of distinct samples (stack + labels) so far."""
        return len(self._samples)

    def _string(self, s: str) -> int:
        index = self._strings.get(s)
        if index is None:
            index = self._strings[s] = len(self._strings)
        return index

    def _location(self, function: str, filename: str, line: int) -> int:
        key = (function, filename)
        fid = self._functions.get(key)
        if fid is None:
            self._string(function)
            self._string(filename)
            fid = self._functions[key] = len(self._functions) + 1
        lkey = (fid, line)
        lid = self._locations.get(lkey)
        if lid is None:
            lid = self._locations[lkey] = len(self._locations) + 1
        return lid

    def add(self, frames: Sequence[tuple[str, str, int]], values: Sequence[int],
            labels: Mapping[str, str] | None = None) -> None:
        """frames: (function name, file name, line), LEAF FIRST; one value per sample type; string labels."""
        if len(values) != len(self._sample_types):
            raise ValueError(f"{len(values)} values for {len(self._sample_types)} sample types")
        stack = tuple([self._location(f, fn, ln) for f, fn, ln in frames])
        label_ids = tuple(sorted((self._string(k), self._string(v)) for k, v in labels.items())) if labels else ()
        key = (stack, label_ids)
        summed = self._samples.get(key)
        if summed is None:
            self._samples[key] = [int(v) for v in values]
        else:
            for i, v in enumerate(values):
                summed[i] += int(v)

    def serialize(self) -> bytes:
        """The Profile message, not compressed."""
        out: list[bytes] = []
        for t, u in self._sample_types:
            out.append(field_bytes(_P_SAMPLE_TYPE, _int_field(_VT_TYPE, t) + _int_field(_VT_UNIT, u)))
        for (stack, label_ids), values in self._samples.items():
            labels = b"".join(field_bytes(_S_LABEL, _int_field(_LB_KEY, k) + _int_field(_LB_STR, v))
                              for k, v in label_ids)
            out.append(field_bytes(_P_SAMPLE, _packed(_S_LOCATION, stack) + _packed(_S_VALUE, values) + labels))
        out.append(field_bytes(_P_MAPPING, _M_ID + varint(_MAPPING_ID) + _int_field(_M_FILENAME, self._mapping_file)
                               + _M_SYMBOLIZED))
        for (fid, line), lid in self._locations.items():
            line_msg = _LN_FUNCTION + varint(fid) + _int_field(_LN_LINE, line)
            out.append(field_bytes(_P_LOCATION, _L_ID + varint(lid) + _L_MAPPING + varint(_MAPPING_ID)
                                   + field_bytes(_L_LINE, line_msg)))
        strings = self._strings
        for (name, filename), fid in self._functions.items():
            name_id = strings[name]
            out.append(field_bytes(_P_FUNCTION, _F_ID + varint(fid) + _int_field(_F_NAME, name_id)
                                   + _int_field(_F_FILENAME, strings[filename])))
        # dicts keep insertion order, which is index order
        out.extend(field_bytes(_P_STRING, s.encode("utf-8", "replace")) for s in strings)
        out.append(_int_field(_P_TIME, self.start_ns))
        out.append(_int_field(_P_DURATION, self.duration_ns))
        pt, pu = self._period_type
        out.append(field_bytes(_P_PERIOD_TYPE, _int_field(_VT_TYPE, pt) + _int_field(_VT_UNIT, pu)))
        out.append(_int_field(_P_PERIOD, self._period))
        return b"".join(out)

    def encode(self) -> bytes:
        """The gzip-compressed serialized Profile, what `go tool pprof` reads."""
        return gzip.compress(self.serialize(), compresslevel=6, mtime=0)
