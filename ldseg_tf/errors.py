"""`UserError`: the one exception type of expected failures.

A bad file, a missing checkpoint, a refused argument or an occupied run
directory is not a bug: the library raises `UserError` and `ldseg` prints it as
one line on stderr (exit status 2, no traceback; `--debug` shows it). Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from typing import Optional


class UserError(ValueError):
    """An expected failure caused by the input, naming what was expected.

    Args:
        path: the file or directory concerned (or a name such as ``--samples``).
        expected: what was expected there, e.g. ``"a positive integer"``.
        actual: what was found, e.g. ``"0"``; optional.
        hint: what to do about it, e.g. ``"pass --overwrite"``; optional.

    `str(error)` is one line: ``"PATH: expected EXPECTED; got ACTUAL. HINT"``.
    A subclass of `ValueError`, so that callers catching the library's former
    `ValueError`s keep working.
    """

    def __init__(self, path, expected: str, actual: Optional[str] = None,
                 hint: Optional[str] = None):
        self.path = os.fspath(path) if path is not None else None
        self.expected, self.actual, self.hint = expected, actual, hint
        text = f"expected {expected}" + (f"; got {actual}" if actual is not None else "")
        text = (f"{self.path}: " if self.path else "") + text + "."
        if hint:
            text += f" {hint}"
        super().__init__(one_line(text))

    @classmethod
    def wrap(cls, err: BaseException, path=None) -> "UserError":
        """A `UserError` carrying the message of a library error `err` (which
        already says what was expected), prefixed by `path` unless it names it."""
        message = one_line(str(err)) or type(err).__name__
        if path is not None and os.fspath(path) not in message:
            message = f"{os.fspath(path)}: {message}"
        new = cls.__new__(cls)
        new.path, new.expected, new.actual, new.hint = path, message, None, None
        ValueError.__init__(new, message)
        return new


def one_line(text: str) -> str:
    """`text` with its lines and runs of spaces joined by single spaces."""
    return " ".join(str(text).split())


def positive_int(name: str, value) -> int:
    """`value` if it is an integer >= 1, else a `UserError` naming `name`."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UserError(name, "a positive integer", repr(value))
    return int(value)
