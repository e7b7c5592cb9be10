"""The real programs tests run (Prometheus, Alertmanager, servers): a free port to give them, and a stop that
always reaps them.

>>> port = free_port()                                    # doctest: +SKIP
>>> process = subprocess.Popen([..., f"--web.listen-address=127.0.0.1:{port}"])  # doctest: +SKIP
>>> stop(process)                                         # doctest: +SKIP
"""

from __future__ import annotations

import subprocess
from typing import Any

from obsbox.stack.ports import free_port

__all__ = ["free_port", "stop"]


def stop(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL when it has not exited within `timeout` seconds; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
