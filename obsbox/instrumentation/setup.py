"""configure(): placeholder until the instrumentation core lands."""

from __future__ import annotations

from typing import Any


class Telemetry:
    def force_flush(self, timeout: float = 5.0) -> bool:
        return True

    def shutdown(self) -> None:
        return None


def configure(*, service_name: str, endpoint: str | None = None, **kwargs: Any) -> Telemetry:
    raise NotImplementedError
