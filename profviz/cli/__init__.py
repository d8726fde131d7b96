"""The ``profviz`` command line. Each command lives in its own module and is registered here."""

from __future__ import annotations

import sys

import click

from ..errors import ProfvizError
from ..model import ProfileError


class ProfvizGroup(click.Group):
    """Turns ProfvizError (and model errors) into one ``profviz: ...`` line and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ProfvizError as exc:
            click.echo(f"profviz: {exc}", err=True)
            sys.exit(exc.exit_code)
        except ProfileError as exc:
            click.echo(f"profviz: {exc}", err=True)
            sys.exit(1)


@click.group(cls=ProfvizGroup)
@click.version_option(package_name="profviz")
def main() -> None:
    """profviz: where does your Python service's time go, CPU or waiting?"""


def _register() -> None:
    from . import attach, demo, findings, formats, profiles, routes, serve, spans, versions

    for module in (profiles, attach, routes, versions, findings, formats, serve, spans, demo):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
