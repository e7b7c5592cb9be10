"""The obsbox command line: `obsbox up | down | status | logs | open | demo | chaos | top | run | check`.

>>> from click.testing import CliRunner
>>> from obsbox.cli import cli
>>> CliRunner().invoke(cli, ["--help"]).exit_code
0

Each subcommand is a thin function over obsbox.stack.engine; obsbox.cli._errors turns the engine's known errors
into one message, a hint and an exit code.
"""

from __future__ import annotations

from obsbox.cli._commands import cli


def main() -> None:
    """Console-script entry point (`obsbox`)."""
    cli(prog_name="obsbox")


__all__ = ["cli", "main"]
