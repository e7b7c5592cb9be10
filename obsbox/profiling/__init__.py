"""Profiling, the fourth signal: stack samples of the whole process, written as pprof profiles.

>>> import obsbox.profiling
>>> obsbox.profiling.enable_pprof(port=6060)   # Go-style /debug/pprof/ on 127.0.0.1:6060   # doctest: +SKIP
'http://127.0.0.1:6060/debug/pprof/'
>>> obsbox.profiling.disable_pprof()            # 404 again, no restart                      # doctest: +SKIP

`obsbox.profiling.pprof` encodes a profile in pprof's protobuf format (what `go tool pprof`, Pyroscope and
Grafana read); `obsbox.profiling.endpoint` serves the on-demand /debug/pprof/ endpoint.
"""

from obsbox.profiling.endpoint import disable_pprof, enable_pprof, pprof_enabled

__all__ = ["disable_pprof", "enable_pprof", "pprof_enabled"]
