"""The generation errors a user's input can cause; any other exception is a bug and keeps its traceback."""

from __future__ import annotations


class GenerateError(ValueError):
    """Bad generate input: one line naming the key or file; exit 2, nothing written."""
