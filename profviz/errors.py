"""The base error the CLI turns into a one-line ``profviz: ...`` message and a non-zero exit."""


class ProfvizError(Exception):
    """A failure with a message that says what failed and what to do. ``exit_code`` is the CLI's."""

    exit_code = 1
