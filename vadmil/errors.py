"""User-facing errors.

A :class:`VadmilError` is a problem with the user's input (a file, a config value, an id). The command-line
entry points print its message as one line on stderr and exit with status 2; it never carries a traceback.
Messages name the offending thing and say what to do about it.
"""


class VadmilError(Exception):
    """A problem with the user's input, reported as one line: what is wrong, where, and how to fix it."""
