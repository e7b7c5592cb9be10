"""The real pprof client: `go tool pprof` run on a file or a URL, its text output returned.

Go's toolchain is on our machines and in CI (ARCHITECTURE.md); `go tool pprof` needs no network. Without Go a test
skips saying so, except in CI, where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def go_pprof(*args: str | Path, timeout: float = 120) -> str:
    """stdout of `go tool pprof ARGS` (asserting it succeeded)."""
    go = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None)
    if go is None:
        if os.environ.get("CI"):
            pytest.fail("no Go toolchain: CI reads profiles with `go tool pprof`")
        pytest.skip("needs the Go toolchain: `go tool pprof` is the client these tests read profiles with")
    env = {**os.environ, "PPROF_TMPDIR": os.environ.get("PPROF_TMPDIR", "/tmp"), "PPROF_NO_BROWSER": "1"}
    result = subprocess.run([go, "tool", "pprof", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, check=False, env=env)
    assert result.returncode == 0, f"go tool pprof {' '.join(map(str, args))}: {result.stderr}"
    return result.stdout
