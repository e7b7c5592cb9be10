"""`pip install obsbox` as a new user does it: the wheel built from this tree, installed into a fresh virtualenv
with nothing else. `obsbox demo` and `obsbox up --samples` then say exactly what to install (the exit code
docs/cli.md gives, never a traceback), and with what they name installed, they run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.stack._harness import native_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the virtualenv's bin directory, the wheel) after `pip install <wheel>` into a new virtualenv."""
    tmp = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(ROOT)])
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("obsbox-*.whl")
    venv.create(tmp / "venv", with_pip=True)
    bin_dir = tmp / "venv" / "bin"
    installed = _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)])
    assert installed.returncode == 0, installed.stderr
    return bin_dir, wheel


def test_demo_and_up_samples_after_a_bare_install_say_what_to_install(fresh: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    bin_dir, _ = fresh
    env = native_env(tmp_path)
    for command in (["demo", "--runtime", "native", "--no-top", "--duration", "1"],
                    ["up", "--samples", "--runtime", "native"]):
        result = _run([str(bin_dir / "obsbox"), *command], env, timeout=120)
        out = result.stdout + result.stderr
        assert "Traceback" not in out, out
        assert result.returncode == 9, out  # docs/cli.md: a Python package the command needs is not installed
        assert "pip install 'obsbox[samples]'" in result.stderr and "hint:" in result.stderr
        assert f"{bin_dir / 'python'} -m pip install 'obsbox[samples]'" in result.stderr
    assert not (tmp_path / "state" / "native" / "prometheus").exists()  # nothing was started


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="needs Debian's prometheus (scripts/install-system-deps.sh installs it)")
def test_with_the_samples_extra_the_demo_runs(fresh: tuple[Path, Path], tmp_path: Path) -> None:
    bin_dir, wheel = fresh
    installed = _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", f"{wheel}[samples]"])
    assert installed.returncode == 0, installed.stderr
    env = native_env(tmp_path)
    try:
        result = _run([str(bin_dir / "obsbox"), "demo", "--runtime", "native", "--no-top", "--duration", "3",
                       "--rps", "2"], env, timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "gateway" in result.stdout and "load: 2 requests/s" in result.stdout
    finally:
        _run([str(bin_dir / "obsbox"), "down"], env, timeout=120)
