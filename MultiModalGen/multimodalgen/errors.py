"""Errors raised at the backend's public boundaries.

`UserInputError` is for problems the user can fix (bad file, wrong grid, unknown option); the CLI prints its
message on one line and exits with code 2. `CancelledError` stops long work cleanly when the user cancels.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """A problem with the user's input: the message says what was expected, what arrived and how to fix it."""

    def __init__(self, message: str, *, expected: str | None = None, got: str | None = None,
                 fix: str | None = None):
        parts = [message.rstrip(".")]
        if expected:
            parts.append(f"expected {expected}")
        if got:
            parts.append(f"got {got}")
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__("; ".join(parts) + ".")
        self.expected = expected
        self.got = got
        self.fix = fix


class CancelledError(RuntimeError):
    """Raised inside long work when the user asked to cancel; nothing partial is written."""


class ResourceError(UserInputError):
    """The request would not fit in the available memory (the message gives the estimate)."""
