"""Fixtures shared by the whole suite.

`otlp_receiver` (a real OTLP/HTTP receiver on an ephemeral port) comes from obsbox.testing, the same fixture users
get through the obsbox pytest plugin.
"""

from obsbox.testing import otlp_receiver

__all__ = ["otlp_receiver"]
