"""The pprof encoder read back by the real client, `go tool pprof`: functions, values, labels, aggregation."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from obsbox.profiling.pprof import ProfileBuilder
from tests.profiling._gopprof import go_pprof

START_NS = 1_700_000_000_000_000_000  # 2023-11-14 22:13:20 UTC
MS = 1_000_000


def _cpu_builder() -> ProfileBuilder:
    return ProfileBuilder([("samples", "count"), ("cpu", "nanoseconds")], period_type=("cpu", "nanoseconds"),
                          period=10 * MS, start_ns=START_NS, duration_ns=2_000 * MS)


def _write(tmp_path: Path, builder: ProfileBuilder) -> Path:
    path = tmp_path / "profile.pb.gz"
    path.write_bytes(builder.encode())
    return path


def _flat(top: str) -> dict[str, str]:
    """function -> flat value column of `-top` output."""
    rows = {}
    for line in top.splitlines():
        cols = line.split()
        if len(cols) == 6 and re.fullmatch(r"[\d.]+%", cols[1]):
            rows[cols[5]] = cols[0]
    return rows


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    b = _cpu_builder()
    hot = [("spin", "/app/work.py", 12), ("handle", "/app/work.py", 30), ("main", "/app/main.py", 5)]
    for _ in range(7):
        b.add(hot, [1, 10 * MS], {"span_id": "00f067aa0ba902b7", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})
    b.add(hot, [2, 20 * MS])  # same stack, no labels: a sample of its own
    b.add([("sleep_a_bit", "/app/work.py", 44), ("handle", "/app/work.py", 31), ("main", "/app/main.py", 5)],
          [1, 10 * MS], {"span_id": "b7ad6b7169203331"})
    return _write(tmp_path, b)


def test_top_shows_functions_and_summed_values(profile: Path) -> None:
    top = go_pprof("-top", profile)
    assert "Type: cpu" in top
    assert "Duration: 2s, Total samples = 100ms" in top
    assert "Time: 2023-11-14 22:13:20 UTC" in top
    assert _flat(top) == {"spin": "90ms", "sleep_a_bit": "10ms", "handle": "0", "main": "0"}
    # the other sample type is there too
    counts = _flat(go_pprof("-top", "-sample_index=samples", profile))
    assert counts["spin"] == "9" and counts["sleep_a_bit"] == "1"


def test_traces_are_leaf_first_with_their_labels(profile: Path) -> None:
    traces = go_pprof("-traces", profile).split("-----------+")
    by_leaf: dict[str, list[str]] = {}
    for block in traces:
        lines = [ln.split() for ln in block.splitlines() if ln.strip()]
        frames = [ln[-1] for ln in lines if ln and not ln[0].endswith(":") and not ln[0].startswith("-")]
        if frames and frames[0] in ("spin", "sleep_a_bit"):
            by_leaf.setdefault(frames[0], []).append(block)
            assert frames == [frames[0], "handle", "main"], block
    assert len(by_leaf["spin"]) == 2  # with and without labels: two samples
    labelled = [b for b in by_leaf["spin"] if "span_id:" in b]
    assert len(labelled) == 1 and "00f067aa0ba902b7" in labelled[0] and "70ms" in labelled[0]
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in labelled[0]
    assert "b7ad6b7169203331" in by_leaf["sleep_a_bit"][0]


def test_tags_sum_values_per_label(profile: Path) -> None:
    tags = go_pprof("-tags", profile)
    assert re.search(r"span_id: Total 80ms of 100ms", tags), tags
    assert re.search(r"70ms \(70\.00%\): 00f067aa0ba902b7", tags), tags
    assert re.search(r"10ms \(10\.00%\): b7ad6b7169203331", tags), tags
    assert re.search(r"trace_id: Total 70ms of 100ms", tags), tags


def test_raw_shows_interned_locations_and_aggregated_samples(profile: Path) -> None:
    raw = go_pprof("-raw", profile)
    samples, _, rest = raw.partition("Samples:")[2].partition("Locations")
    locations, _, mappings = rest.partition("Mappings")
    # 3 distinct samples: 7 identical adds aggregated into one
    assert re.findall(r"^\s+(\d+)\s+(\d+):", samples, re.M) == [("7", "70000000"), ("2", "20000000"),
                                                                  ("1", "10000000")]
    # one location per (function, file, line): main:5 shared, handle at two lines
    locs = re.findall(r"^\s+\d+: 0x0 M=1 (\S+) (\S+?):(\d+):\d+ ", locations, re.M)
    assert sorted(locs) == sorted([("spin", "/app/work.py", "12"), ("handle", "/app/work.py", "30"),
                                   ("main", "/app/main.py", "5"), ("sleep_a_bit", "/app/work.py", "44"),
                                   ("handle", "/app/work.py", "31")])
    assert "[FN][FL][LN]" in mappings  # symbolized: pprof does not look for a binary


def test_heap_style_profile_and_non_ascii_names(tmp_path: Path) -> None:
    b = ProfileBuilder([("inuse_objects", "count"), ("inuse_space", "bytes")], period_type=("space", "bytes"),
                       period=1, start_ns=START_NS)
    b.add([("grow_cache", "/app/cäche.py", 3), ("<module>", "/app/cäche.py", 9)], [10, 5 * 1024 * 1024])
    b.add([("Ünïcode.method", "/app/cäche.py", 20), ("<lambda>", "/app/cäche.py", 21)], [1, 64 * 1024])
    path = _write(tmp_path, b)
    top = go_pprof("-top", path)
    assert "Type: inuse_space" in top
    assert _flat(top) == {"grow_cache": "5120kB", "Ünïcode.method": "64kB", "<module>": "0", "<lambda>": "0"}
    assert _flat(go_pprof("-top", "-sample_index=inuse_objects", path))["grow_cache"] == "10"


def test_empty_profile_is_readable(tmp_path: Path) -> None:
    top = go_pprof("-top", _write(tmp_path, _cpu_builder()))
    assert "Total samples = 0" in top or "0 of 0" in top, top


def test_encode_is_gzip_of_serialize_and_deterministic() -> None:
    def build() -> ProfileBuilder:
        b = _cpu_builder()
        b.add([("f", "a.py", 1)], [1, 10 * MS], {"k": "v"})
        return b
    first, second = build(), build()
    assert gzip.decompress(first.encode()) == first.serialize()
    assert first.encode() == second.encode()


def test_wrong_number_of_values_is_refused() -> None:
    b = _cpu_builder()
    with pytest.raises(ValueError, match="1 values for 2 sample types"):
        b.add([("f", "a.py", 1)], [1])
    assert len(b) == 0
