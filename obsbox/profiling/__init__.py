"""Profiling, the fourth signal: stack samples of the whole process, written as pprof profiles.

`obsbox.profiling.pprof` encodes a profile in pprof's protobuf format (what `go tool pprof`, Pyroscope and
Grafana read).
"""

__all__: list[str] = []
