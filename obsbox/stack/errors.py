"""The engine's known failures: each carries a one-line message and a hint that says what to do next.

>>> try:
...     raise PortInUseError(9090, "prometheus", "pid 42 (python -m http.server)")
... except StackError as e:
...     print(e.message, "|", e.hint)
port 127.0.0.1:9090 (prometheus) is already in use by pid 42 (python -m http.server) | stop that process, or pick another port with OBSBOX_PROMETHEUS_PORT=<port>

The CLI turns every `StackError` into that message, the hint and a non-zero exit code (obsbox/cli/_errors.py);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class StackError(Exception):
    """A failure the user can act on: `message` says what went wrong, `hint` what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(StackError):
    """The command was asked for something that cannot be (bad chaos input, unknown component)."""

    exit_code = 2


class PortInUseError(StackError):
    """A port the stack publishes is taken by another process."""

    exit_code = 3

    def __init__(self, port: int, component: str, holder: str | None = None, *, settable: bool = True) -> None:
        by = f" by {holder}" if holder else ""
        # Only some ports can be moved by a variable: natively those of Prometheus, Alertmanager and the sample
        # services; the others are where the tree's configs (and stack.yml) put them.
        hint = (f"stop that process, or pick another port with OBSBOX_{component.upper()}_PORT=<port>" if settable
                else f"stop that process ({component}'s port is set in the stack tree's configs; a copy of the tree "
                     "in OBSBOX_STACK_DIR can move it)")
        super().__init__(f"port 127.0.0.1:{port} ({component}) is already in use{by}", hint)
        self.port = port
        self.component = component
        self.holder = holder


class DockerError(StackError):
    """The docker CLI failed: keeps the command, its exit code and stderr."""

    exit_code = 4

    def __init__(self, command: list[str], returncode: int, stderr: str, hint: str = "") -> None:
        tail = stderr.strip().splitlines()[-5:]
        detail = ("\n  " + "\n  ".join(tail)) if tail else ""
        super().__init__(f"`{' '.join(command)}` failed with exit code {returncode}{detail}", hint)
        self.command = command
        self.returncode = returncode
        self.stderr = stderr


class RuntimeUnavailableError(StackError):
    """The requested runtime cannot run here (no Docker engine, no binaries)."""

    exit_code = 5


class ComponentFailedError(StackError):
    """A component exited or did not become healthy in time."""

    exit_code = 6


class DownloadError(StackError):
    """A release could not be fetched or did not match its pinned checksum; nothing was installed."""

    exit_code = 7


class BuildError(DownloadError):
    """A component could not be built from its Go modules (same exit code as a failed download: nothing to run)."""


class NotRunningError(StackError):
    """The command needs a running stack (or sample shop) and there is none."""

    exit_code = 8


class MissingPackageError(StackError):
    """A Python package the command needs is not installed; the hint is the `pip install` line that fixes it."""

    exit_code = 9
