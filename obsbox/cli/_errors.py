"""The one place where the engine's known failures become a message, a hint and an exit code.

>>> from obsbox.cli._errors import GuardedGroup
>>> # @click.group(cls=GuardedGroup) makes every subcommand end in `obsbox: <message>` + `hint: <hint>` on failure.
"""

from __future__ import annotations

from typing import Any

import click

from obsbox.stack.errors import StackError


def report(error: StackError) -> None:
    click.secho(f"obsbox: {error.message}", fg="red", err=True)
    if error.hint:
        click.echo(f"hint: {error.hint}", err=True)


class GuardedGroup(click.Group):
    """A click group that turns StackError (from any subcommand) into a clear message and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StackError as error:
            report(error)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("", err=True)
            ctx.exit(130)
