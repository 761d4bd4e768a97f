"""User-facing errors.

A :class:`VadmilError` is a problem with the user's input (a file, a config value, an id). The command-line
entry points print its message as one line on stderr and exit with status 2; it never carries a traceback.
Messages name the offending thing and say what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable


class VadmilError(Exception):
    """A problem with the user's input, reported as one line: what is wrong, where, and how to fix it."""


def check_choice(what: str, value, choices: Iterable, where: str = "") -> None:
    """Raise ``[where: ]unknown <what> '<value>'; choose one of a, b, c`` unless ``value`` is one of ``choices``:
    the one wording of every such error."""
    choices = list(choices)
    if value not in choices:
        prefix = f"{where}: " if where else ""
        raise VadmilError(f"{prefix}unknown {what} '{value}'; choose one of {', '.join(map(str, choices))}")
