"""The package's public face: the names of the API and the license it ships under."""

from pathlib import Path

import obsbox


def test_public_api_is_explicit() -> None:
    assert {"configure", "instrument", "logger"} <= set(obsbox.__all__)
    for name in obsbox.__all__:
        assert hasattr(obsbox, name), name


def test_license_is_apache_2() -> None:
    text = (Path(__file__).parents[1] / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0" in text
