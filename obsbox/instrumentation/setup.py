"""configure(): placeholder until the instrumentation core lands."""

from __future__ import annotations


class Telemetry:
    def shutdown(self) -> None:
        return None


def configure(*, service_name: str) -> Telemetry:
    raise NotImplementedError
