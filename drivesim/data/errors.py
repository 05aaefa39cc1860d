"""The one error type of the data layer: a one-line message naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

_PREFIX = f"{__name__}.DataError: "


class DataError(ValueError):
    """Bad input data. `str(err)` is one line: `<path>: <problem>`.

    A DataLoader worker re-raises it in the main process as `DataError(<worker traceback text>)`;
    the one-argument form recovers the original line from that text, so the error stays one line.
    """

    def __init__(self, path: str | Path, problem: str | None = None) -> None:
        if problem is None:
            text = str(path)
            lines = [line[len(_PREFIX):] for line in text.splitlines() if line.startswith(_PREFIX)]
            path, _, problem = (lines[-1] if lines else " ".join(text.split())).partition(": ")
        self.path = str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (DataError, (self.path, self.problem))


ON_ERROR = ("raise", "skip")


def check_on_error(value: str) -> str:
    if value not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {value!r}")
    return value
