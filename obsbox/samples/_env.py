"""Reading the samples' settings from the environment, with defaults that suit a local demo."""

from __future__ import annotations

import os

from obsbox.samples._services import SERVICES


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def service_url(service: str) -> str:
    """Where another sample service listens: $<SERVICE>_URL, else its default port on 127.0.0.1."""
    info = SERVICES[service]
    return os.environ.get(info.url_env, f"http://127.0.0.1:{info.default_port}").rstrip("/")
