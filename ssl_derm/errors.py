"""The one exception type for bad user input.

The CLI turns a ``UserError`` into a single line on stderr and exit code 2;
any other exception is a bug and keeps its traceback (exit code 1).
"""


class UserError(Exception):
    """Bad input, usage or file: reported as one clear line, exit code 2."""
