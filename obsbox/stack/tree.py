"""Where the stack tree lives: the compose file, the image pins and the component configs.

In a source checkout the tree is the top of the repository (stack.yml, .env, collector/, backends/,
dashboards/, alerts/); an installed wheel carries the same files under ``obsbox/_stack/``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["pinned_images", "stack_root"]

_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def stack_root() -> Path:
    """Return the directory that holds ``stack.yml`` and the config tree next to it.

    >>> root = stack_root()
    >>> (root / "stack.yml").is_file() and (root / "backends" / "prometheus" / "prometheus.yml").is_file()
    True

    A source checkout (``pyproject.toml`` beside ``stack.yml`` one level above the package) wins over the copy
    shipped in the wheel, so edits to the repository are what ``obsbox up`` runs during development.
    """
    checkout = _PACKAGE_DIR.parent
    if (checkout / "stack.yml").is_file() and (checkout / "pyproject.toml").is_file():
        return checkout
    shipped = _PACKAGE_DIR / "_stack"
    if (shipped / "stack.yml").is_file():
        return shipped
    raise FileNotFoundError(
        f"obsbox: no stack tree found (looked for {checkout / 'stack.yml'} and {shipped / 'stack.yml'}); "
        "reinstall obsbox or run from a checkout of its repository"
    )


def pinned_images(root: Path | None = None) -> dict[str, str]:
    """Return the image pins of ``.env`` (the one place versions are set), e.g. ``{"PROMETHEUS_IMAGE": ...}``.

    >>> pinned_images()["PROMETHEUS_IMAGE"].startswith("prom/prometheus:v")
    True
    """
    env_file = (root or stack_root()) / ".env"
    pins: dict[str, str] = {}
    for raw in env_file.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        pins[key.strip()] = value.strip().strip("'\"")
    return pins
