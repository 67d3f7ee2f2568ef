"""The two ways a command ends badly, each with its exit code (docs/cli.md, "Exit codes")."""

from __future__ import annotations

OK = 0
FAILED = 1
BAD_INPUT = 2


class CliError(Exception):
    """Ends the command with a one-line message on stderr and ``exit_code``."""

    exit_code = FAILED


class OperationFailed(CliError):
    """AWS refused or failed a call, or part of the stack could not be read."""

    exit_code = FAILED


class BadInput(CliError):
    """What the operator asked for does not exist or is not this stack's: nothing was changed."""

    exit_code = BAD_INPUT


class Cancelled(CliError):
    """The operator answered no: nothing was changed, but nothing was done either."""

    exit_code = FAILED
